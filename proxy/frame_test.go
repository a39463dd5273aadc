package proxy

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
)

// frame builds one frame: fin, opcode, payload length n (payload bytes are
// filler), masked or not.
func frame(fin bool, opcode byte, n int, masked bool) []byte {
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	var mask byte
	if masked {
		mask = 0x80
	}
	var b []byte
	switch {
	case n < 126:
		b = []byte{b0, mask | byte(n)}
	case n < 1<<16:
		b = []byte{b0, mask | 126, 0, 0}
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = []byte{b0, mask | 127, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	if masked {
		b = append(b, 1, 2, 3, 4)
	}
	return append(b, bytes.Repeat([]byte{'x'}, n)...)
}

func concat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// boundaries returns the offsets at which the tracker is at a frame
// boundary when fed p in chunks of size step.
func boundaries(p []byte, step int) (offsets []int, tr frameTracker) {
	off := 0
	for off < len(p) {
		end := min(off+step, len(p))
		chunk := p[off:end]
		for len(chunk) > 0 {
			k := tr.toBoundary(chunk)
			if k == 0 { // at a boundary already: step over one byte
				tr.advance(chunk[:1])
				k = 1
			}
			chunk = chunk[k:]
			off += k
			if tr.atBoundary() {
				offsets = append(offsets, off)
			}
		}
	}
	return offsets, tr
}

func TestFrameTracker(t *testing.T) {
	for _, tc := range []struct {
		name       string
		stream     []byte
		want       []int // boundary offsets after the start
		wantClosed bool
		wantBroken bool
	}{
		{"one short text frame", frame(true, 1, 5, false), []int{7}, false, false},
		{"masked", frame(true, 2, 5, true), []int{11}, false, false},
		{"empty payload", frame(true, 1, 0, false), []int{2}, false, false},
		{"16-bit length", frame(true, 2, 300, true), []int{2 + 2 + 4 + 300}, false, false},
		{"64-bit length", frame(true, 2, 70000, false), []int{2 + 8 + 70000}, false, false},
		{"fragments with a ping between",
			concat(frame(false, 1, 3, true), frame(true, 9, 2, true), frame(true, 0, 4, true)),
			[]int{9, 9 + 8, 9 + 8 + 10}, false, false},
		{"close", concat(frame(true, 1, 1, false), frame(true, 8, 2, false)), []int{3, 7}, true, false},
		{"reserved opcode", frame(true, 3, 1, false), nil, false, true},
		{"long control frame", frame(true, 9, 126, false), nil, false, true},
		{"fragmented control frame", frame(false, 8, 2, false), nil, false, true},
		{"64-bit length with top bit", []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{1, 2, 3, 7, 1 << 20} {
				got, tr := boundaries(tc.stream, step)
				if !slices.Equal(got, tc.want) {
					t.Errorf("step %d: boundaries = %v, want %v", step, got, tc.want)
				}
				if tr.closed != tc.wantClosed || tr.broken != tc.wantBroken {
					t.Errorf("step %d: closed, broken = %v, %v; want %v, %v", step, tr.closed, tr.broken, tc.wantClosed, tc.wantBroken)
				}
			}
		})
	}
}

func TestCloseFrame(t *testing.T) {
	for _, masked := range []bool{false, true} {
		f := closeFrame(CloseGoingAway, goAwayReason, masked)
		var tr frameTracker
		tr.advance(f)
		if !tr.closed || !tr.atBoundary() {
			t.Fatalf("masked=%v: tracker after closeFrame: closed %v, at boundary %v; want both", masked, tr.closed, tr.atBoundary())
		}
		if got := f[1]&0x80 != 0; got != masked {
			t.Errorf("mask bit = %v, want %v", got, masked)
		}
		payload := f[2:]
		if masked {
			key := payload[:4]
			payload = append([]byte(nil), payload[4:]...)
			for i := range payload {
				payload[i] ^= key[i%4]
			}
		}
		if code := binary.BigEndian.Uint16(payload); code != CloseGoingAway || string(payload[2:]) != goAwayReason {
			t.Errorf("masked=%v: payload = %d %q, want %d %q", masked, code, payload[2:], CloseGoingAway, goAwayReason)
		}
	}
}

// closeWith builds a close frame whose payload is payload, masked with
// the key 0x11 0x22 0x33 0x44 when masked.
func closeWith(payload []byte, masked bool) []byte {
	b := []byte{0x88, byte(len(payload))}
	key := []byte{0x11, 0x22, 0x33, 0x44}
	if masked {
		b[1] |= 0x80
		b = append(b, key...)
	}
	for i, c := range payload {
		if masked {
			c ^= key[i%4]
		}
		b = append(b, c)
	}
	return b
}

func TestFrameTrackerCloseCode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream []byte
		want   uint16
	}{
		{"1000 unmasked", closeWith([]byte{0x03, 0xe8}, false), 1000},
		{"1001 masked, with reason", closeWith([]byte{0x03, 0xe9, 'b', 'y', 'e'}, true), 1001},
		{"4321 masked", closeWith([]byte{0x10, 0xe1}, true), 4321},
		{"no code", closeWith(nil, false), 1005},
		{"no code, masked", closeWith(nil, true), 1005},
		{"after data frames", concat(frame(true, 1, 300, true), frame(true, 9, 4, true), closeWith([]byte{0x03, 0xf3}, true)), 1011},
		{"only the first close counts", concat(closeWith([]byte{0x03, 0xe8}, false), closeWith([]byte{0x03, 0xe9}, false)), 1000},
		{"proxy's own close frame", closeFrame(CloseGoingAway, goAwayReason, true), 1001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{1, 2, 3, 5, 1 << 20} {
				_, tr := boundaries(tc.stream, step)
				if !tr.closed || tr.closeCode != tc.want {
					t.Errorf("step %d: closed %v, closeCode %d; want true, %d", step, tr.closed, tr.closeCode, tc.want)
				}
			}
		})
	}
}

// FuzzFrameHeader checks that the tracker never panics, and that where it
// finds frame boundaries does not depend on how the stream is cut into
// chunks.
func FuzzFrameHeader(f *testing.F) {
	f.Add(frame(true, 1, 5, true), 3)
	f.Add(concat(frame(false, 1, 3, true), frame(true, 9, 2, true), frame(true, 0, 4, true)), 1)
	f.Add(frame(true, 2, 300, false), 7)
	f.Add(frame(true, 8, 2, false), 2)
	f.Add([]byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, 4)
	f.Add([]byte{0x81, 0xfe, 0xff}, 1)
	f.Add([]byte{0x89, 126, 0, 200}, 5)
	f.Fuzz(func(t *testing.T, stream []byte, step int) {
		if step <= 0 || step > len(stream)+1 {
			step = len(stream) + 1
		}
		whole, trWhole := boundaries(stream, len(stream)+1)
		split, trSplit := boundaries(stream, step)
		if !slices.Equal(whole, split) {
			t.Fatalf("boundaries whole %v, in chunks of %d %v", whole, step, split)
		}
		if trWhole.closed != trSplit.closed || trWhole.broken != trSplit.broken || trWhole.closeCode != trSplit.closeCode {
			t.Fatalf("state whole %+v, split %+v", trWhole, trSplit)
		}
	})
}

// gateStream feeds stream through a limitGate in chunks of step bytes and
// returns what it emits, and where it stopped (len(stream) if it did not).
func gateStream(stream []byte, step int, limit uint64) (emitted []byte, stop int) {
	var (
		tr frameTracker
		g  limitGate
	)
	emit := func(p []byte) error {
		emitted = append(emitted, p...)
		return nil
	}
	off := 0
	for off < len(stream) {
		end := min(off+step, len(stream))
		n, over, _ := g.feed(&tr, stream[off:end], limit, emit)
		off += n
		if over {
			return emitted, off
		}
	}
	return emitted, len(stream)
}

func TestLimitGate(t *testing.T) {
	msg := func(n int) []byte { return frame(true, 2, n, true) }
	ping := frame(true, 9, 125, true)
	for _, tc := range []struct {
		name   string
		stream []byte
		limit  uint64
		// want is how many bytes of stream may reach the backend: all of
		// it, or up to the start of the refused frame.
		want int
	}{
		{"under the limit", concat(msg(100), msg(1000)), 1000, 2*2 + 2*4 + 100 + 1000 + 2},
		{"one byte over", concat(msg(100), msg(1001), msg(10)), 1000, 2 + 4 + 100},
		{"over at once", msg(70000), 1000, 0},
		{"fragments add up", concat(frame(false, 1, 400, true), frame(false, 0, 400, true), frame(true, 0, 400, true)), 1000, 2 * len(frame(false, 0, 400, true))},
		{"control frames do not count", concat(frame(false, 1, 900, true), ping, frame(true, 0, 100, true)), 1000, len(concat(frame(false, 1, 900, true), ping, frame(true, 0, 100, true)))},
		{"a new message starts from zero", concat(msg(900), msg(900)), 1000, 2 * (2 + 2 + 4 + 900)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{1, 2, 3, 5, 13, 64, 1 << 20} {
				emitted, _ := gateStream(tc.stream, step, tc.limit)
				if !bytes.Equal(emitted, tc.stream[:tc.want]) {
					t.Errorf("step %d: emitted %d bytes, want the first %d of the stream", step, len(emitted), tc.want)
				}
			}
		})
	}
}

// FuzzLimitGate checks that what the gate lets through is a prefix of the
// stream that ends at a frame boundary, the same whatever the chunking,
// and that it never panics.
func FuzzLimitGate(f *testing.F) {
	f.Add(concat(frame(true, 2, 100, true), frame(true, 2, 2000, true)), 7, uint16(1000))
	f.Add(concat(frame(false, 1, 400, true), frame(true, 9, 5, true), frame(true, 0, 700, true)), 1, uint16(1000))
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 0, 0x10, 0, 1, 2, 3, 4}, 3, uint16(10))
	f.Fuzz(func(t *testing.T, stream []byte, step int, limit uint16) {
		if step <= 0 || step > len(stream)+1 {
			step = len(stream) + 1
		}
		whole, wholeStop := gateStream(stream, len(stream)+1, uint64(limit)+1)
		split, splitStop := gateStream(stream, step, uint64(limit)+1)
		if !bytes.Equal(whole, split) || wholeStop != splitStop {
			t.Fatalf("whole: %d bytes, stop %d; in chunks of %d: %d bytes, stop %d", len(whole), wholeStop, step, len(split), splitStop)
		}
		if !bytes.HasPrefix(stream, whole) {
			t.Fatal("the gate emitted bytes that are not the stream's")
		}
	})
}

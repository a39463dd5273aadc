package proxy

import (
	"encoding/binary"
	"math/rand/v2"
)

// WebSocket framing (RFC 6455 5.2), as far as the tunnel needs it: where
// frames begin and end, and whether a close frame has passed. Payloads are
// skipped, never copied or unmasked.

const (
	maxFrameHeader = 14 // 2 + 8 (64-bit length) + 4 (mask key)

	opClose = 0x8
	opPing  = 0x9

	// CloseGoingAway is the close code sent to both peers when the proxy
	// shuts down (RFC 6455 7.4.1: "going away").
	CloseGoingAway = 1001
	// CloseMessageTooBig is the close code a client gets for a message
	// over Limits.MaxMessageBytes (RFC 6455 7.4.1).
	CloseMessageTooBig = 1009
	// closeNoStatus stands for a close frame without a code (RFC 6455
	// 7.4.1: 1005, never sent on the wire).
	closeNoStatus = 1005
)

// frameTracker follows the frame structure of one direction of a tunnel
// from the bytes that pass, in chunks of any size. The zero value is at the
// start of a stream. Every tunnel holds two, so the counters that never
// exceed a header's 14 bytes are bytes.
type frameTracker struct {
	remain uint64 // payload bytes of the current frame not yet seen

	// msgLen is the length of the data message in flight, its fragments
	// so far together; over is set (and consume stops) at the header that
	// takes it past gate's limit.
	msgLen uint64

	hdr       [maxFrameHeader]byte
	mask      [4]byte // the current close frame's masking key (zero when unmasked)
	hdrN      uint8   // bytes of the current header seen so far
	need      uint8   // length of the current header, known once hdrN >= 2
	codeN     uint8   // bytes of the current close frame's code seen
	inPayload bool    // between a complete header and the end of its payload
	opcode    byte    // opcode of the current frame

	// closed is set once a complete close frame has passed; closeCode is
	// that first close frame's code, 1005 when it carried none. Only a
	// close frame's first two payload bytes are ever looked at.
	closed    bool
	closeCode uint16

	over bool
	// broken is set when the bytes are not WebSocket framing; the tracker
	// then stops (and never reports a boundary again).
	broken bool
}

// atBoundary reports whether the stream is between two frames, where a
// control frame may be inserted (RFC 6455 5.4: also between the fragments
// of a message).
func (f *frameTracker) atBoundary() bool {
	return !f.broken && !f.inPayload && f.hdrN == 0
}

// advance consumes all of p.
func (f *frameTracker) advance(p []byte) {
	f.consume(p, false, 0)
}

// toBoundary consumes p up to the next frame boundary and returns how many
// bytes that took: 0 when already at one, len(p) when p ends before one.
func (f *frameTracker) toBoundary(p []byte) int {
	if f.atBoundary() {
		return 0
	}
	return f.consume(p, true, 0)
}

// consume follows p; limit, when not 0, is the most a message may be (see
// gate).
func (f *frameTracker) consume(p []byte, stopAtBoundary bool, limit uint64) int {
	i := 0
	for i < len(p) {
		if f.broken {
			return len(p)
		}
		if f.inPayload {
			k := uint64(len(p) - i)
			if k > f.remain {
				k = f.remain
			}
			if f.opcode == opClose && f.codeN < 2 {
				f.takeCode(p[i : i+int(k)])
			}
			i += int(k)
			f.remain -= k
			if f.remain == 0 {
				f.endFrame()
				if stopAtBoundary {
					return i
				}
			}
			continue
		}
		// Header bytes: copy only what the header still needs.
		if f.hdrN < 2 {
			f.hdr[f.hdrN] = p[i]
			f.hdrN++
			i++
			if f.hdrN == 2 {
				f.need = uint8(headerLen(f.hdr[0], f.hdr[1]))
			}
		} else {
			k := copy(f.hdr[f.hdrN:f.need], p[i:])
			f.hdrN += uint8(k)
			i += k
		}
		if f.hdrN < 2 || f.hdrN < f.need {
			continue
		}
		f.startPayload(limit)
		if f.over {
			return i // just past the header that made the message too big
		}
		if !f.inPayload && !f.broken {
			f.endFrame() // an empty payload
			if stopAtBoundary {
				return i
			}
		}
	}
	return i
}

// headerLen is the length of a frame header from its first two bytes.
func headerLen(b0, b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// startPayload parses the complete header in f.hdr.
func (f *frameTracker) startPayload(limit uint64) {
	b0, b1 := f.hdr[0], f.hdr[1]
	f.opcode = b0 & 0x0f
	var length uint64
	switch l := b1 & 0x7f; l {
	case 126:
		length = uint64(binary.BigEndian.Uint16(f.hdr[2:4]))
	case 127:
		length = binary.BigEndian.Uint64(f.hdr[2:10])
		if length>>63 != 0 {
			f.broken = true // the most significant bit must be 0
			return
		}
	default:
		length = uint64(l)
	}
	switch {
	case f.opcode >= 0x3 && f.opcode <= 0x7, f.opcode >= 0xb:
		f.broken = true // reserved opcodes
		return
	case f.opcode&0x8 != 0 && (length > 125 || b0&0x80 == 0):
		f.broken = true // control frames are short and never fragmented
		return
	}
	switch f.opcode {
	case 0x1, 0x2: // a text or binary message begins
		f.msgLen = length
	case 0x0: // continuation
		f.msgLen += length
	}
	if limit > 0 && f.msgLen > limit && f.opcode < 0x8 {
		f.over = true
	}
	if f.opcode == opClose && !f.closed {
		f.closeCode, f.codeN, f.mask = 0, 0, [4]byte{}
		if b1&0x80 != 0 {
			copy(f.mask[:], f.hdr[f.need-4:f.need])
		}
	}
	f.hdrN = 0
	f.remain = length
	f.inPayload = length > 0
}

// takeCode collects the close code from the start of a close frame's
// payload (p continues it), unmasking it.
func (f *frameTracker) takeCode(p []byte) {
	if f.closed {
		return // only the first close frame's code is kept
	}
	for _, b := range p {
		if f.codeN == 2 {
			return
		}
		f.closeCode = f.closeCode<<8 | uint16(b^f.mask[f.codeN])
		f.codeN++
	}
}

func (f *frameTracker) endFrame() {
	f.inPayload = false
	if f.opcode == opClose && !f.closed {
		f.closed = true
		if f.codeN < 2 {
			f.closeCode = closeNoStatus
		}
	}
}

// closeFrame returns a close frame carrying code and reason, masked with a
// random key when masked is set (frames towards a server must be masked).
// reason must be at most 123 bytes.
func closeFrame(code uint16, reason string, masked bool) []byte {
	n := 2 + len(reason)
	b := make([]byte, 0, 2+4+n)
	b = append(b, 0x80|opClose, byte(n))
	payload := make([]byte, n)
	binary.BigEndian.PutUint16(payload, code)
	copy(payload[2:], reason)
	if masked {
		b[1] |= 0x80
		var key [4]byte
		binary.LittleEndian.PutUint32(key[:], rand.Uint32())
		b = append(b, key[:]...)
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return append(b, payload...)
}

// gate is advance for a stream whose messages are limited to limit bytes
// (all fragments together; control frames do not count). It consumes p up
// to a header that takes a message past the limit (the tracker then stands
// just past that header, in its payload) and reports which of p's bytes
// may be relayed: the first send of them. held is how many bytes of the
// header in progress at p's start came in earlier chunks and were held
// back by the caller. over reports a header over the limit; a header that
// p ends inside is held back too (not in send). So no byte of a frame that
// makes a message too big is ever relayed: its header's bytes are held
// until the header is whole and judged.
func (f *frameTracker) gate(p []byte, limit uint64, held int) (send int, over bool) {
	n := f.consume(p, false, limit)
	over, f.over = f.over, false
	switch {
	case over:
		// The offending header: the held one, finishing at n, or one
		// whole in p.
		if held > 0 && n == int(f.need)-held {
			return 0, true
		}
		return n - int(f.need), true
	case !f.broken && !f.inPayload && f.hdrN > 0:
		// p ends inside a header: hold back its bytes in p (all of p when
		// it is still the held one).
		inP := int(f.hdrN)
		if held > 0 && inP == held+n {
			inP = n
		}
		return n - inP, false
	}
	return n, false
}

// limitGate holds back the bytes of a frame header that a chunk ends
// inside, for frameTracker.gate, until the header is whole and judged.
type limitGate struct {
	held  [maxFrameHeader]byte
	heldN uint8
}

// feed passes p through the tracker under the limit and emits what may be
// relayed, in order: held header bytes once their header passed, then the
// bytes of p that may go. It returns how many bytes of p the tracker took
// (all of them, unless a header over the limit stopped it: then just past
// that header) and whether that happened; err is emit's.
func (g *limitGate) feed(f *frameTracker, p []byte, limit uint64, emit func([]byte) error) (n int, over bool, err error) {
	held := int(g.heldN)
	send, over := f.gate(p, limit, held)
	if held > 0 && send > 0 {
		if err := emit(g.held[:held]); err != nil {
			return len(p), over, err
		}
	}
	if send > 0 {
		if err := emit(p[:send]); err != nil {
			return len(p), over, err
		}
	}
	switch {
	case over:
		g.heldN = 0
		if held > 0 && send == 0 {
			return int(f.need) - held, true, nil
		}
		return send + int(f.need), true, nil // just past the refused header
	case held > 0 && send == 0:
		g.heldN += uint8(copy(g.held[held:], p)) // still the same header
	default:
		g.heldN = uint8(copy(g.held[:], p[send:]))
	}
	return len(p), false, nil
}

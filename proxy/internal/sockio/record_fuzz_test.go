//go:build linux && !wsgate_portable

package sockio

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
)

// records is where the TLS records of stream end, as a reader that knows
// nothing of recordConn finds them: each record is a 5-byte header whose
// last two bytes are the body's length, then the body. The last record
// may be cut short by the end of the stream; its end is past it then.
func records(stream []byte) (ends []int) {
	for start := 0; start < len(stream); {
		end := len(stream) + 1 // unknown: its header is cut short
		if start+tlsRecordHeader <= len(stream) {
			end = start + tlsRecordHeader + (int(stream[start+3])<<8 | int(stream[start+4]))
		}
		ends = append(ends, end)
		start = end
	}
	return ends
}

// recordAt returns the start and end of the record that holds the byte at
// pos, the end being past the stream when the record's header is not all
// in it; ok is false at the end of the stream.
func recordAt(ends []int, pos int) (start, end int, ok bool) {
	for _, e := range ends {
		if pos < e {
			return start, e, true
		}
		start = e
	}
	return 0, 0, false
}

// FuzzRecordConn feeds arbitrary bytes as a client's socket stream through
// a real loopback TCP connection to the record-aware conn, written in
// chunks and read with buffers of the fuzzer's sizes, after a prefix taken
// with Peek and Discard (as a PROXY protocol header is). It checks what
// crypto/tls and the tunnel rely on, against record boundaries found
// independently of recordConn:
//   - the bytes Read returns are the stream's, in order, none lost or
//     repeated, and then io.EOF;
//   - a Read never crosses the end of a record, and returns all of the
//     record's rest that is buffered and fits (a whole record at once);
//   - pending() says whether the rest of the current record is buffered,
//     and then a Read that may not wait (noWait) gets it;
//   - once all is read, no buffer is held.
//
// Seeds in testdata/fuzz/FuzzRecordConn.
func FuzzRecordConn(f *testing.F) {
	f.Fuzz(func(t *testing.T, stream []byte, skip uint8, chunk, readSize uint16) {
		stream = stream[:min(len(stream), 20<<10)] // a full-size record fits
		skipN := min(int(skip), len(stream))
		chunkN := max(int(chunk)%1024+1, len(stream)/64) // at most 64 writes
		readN := int(readSize)%(maxRecordPlaintext+1024) + 1
		rest := stream[skipN:]
		ends := records(rest)

		client, server := tcpPair(t)
		rc := newRecordConn(server)
		_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
		written := 0
		send := func() {
			k := min(chunkN, len(stream)-written)
			if _, err := client.Write(stream[written : written+k]); err != nil {
				t.Fatal(err)
			}
			written += k
		}

		for written < skipN {
			send()
		}
		if b, err := rc.Peek(skipN); err != nil || !bytes.Equal(b, stream[:skipN]) {
			t.Fatalf("Peek(%d) = %q, %v; want %q", skipN, b, err, stream[:skipN])
		}
		rc.Discard(skipN)

		p := make([]byte, readN)
		for pos := 0; ; {
			// pending: the rest of the record at pos is buffered.
			avail := pos + rc.buffered()
			_, end, ok := recordAt(ends, pos)
			if want := ok && avail >= end; rc.pending() != want {
				t.Fatalf("at %d with %d bytes buffered, pending() = %v; the record ends at %d", pos, avail-pos, !want, end)
			}
			if pos == len(rest) {
				break
			}
			if skipN+pos == written {
				send()
			}
			buffered := rc.buffered()
			rc.noWait = buffered > 0 && pos%2 == 0 // sometimes, a Read that may not wait
			n, err := rc.Read(p)
			rc.noWait = false
			if err != nil {
				t.Fatalf("Read() at %d (%d bytes buffered) = %d, %v", pos, buffered, n, err)
			}
			if n == 0 || !bytes.Equal(p[:n], rest[pos:pos+n]) {
				t.Fatalf("Read() at %d = %q; the stream has %q", pos, p[:n], rest[pos:min(len(rest), pos+n)])
			}
			start, end, _ := recordAt(ends, pos)
			if pos+n > end {
				t.Fatalf("Read() at %d returned %d bytes, past the record's end at %d", pos, n, end)
			}
			// From what was buffered: as much of the record as fits. A
			// header not all buffered is returned as it is.
			if buffered > 0 {
				want := min(readN, buffered)
				if start+tlsRecordHeader <= pos+buffered {
					want = min(want, end-pos)
				}
				if n != want {
					t.Fatalf("Read() at %d with %d bytes buffered returned %d bytes, want %d (record %d..%d, buffer %d)", pos, buffered, n, want, start, end, readN)
				}
			}
			pos += n
		}
		if rc.bp != nil {
			t.Error("a buffer is held after the whole stream was read")
		}
		client.Close()
		if n, err := rc.Read(p); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("Read() after the stream and FIN = %d, %v; want io.EOF", n, err)
		}
	})
}

package proxy

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
)

// scriptedBackend is a loopback WebSocket backend that answers every
// upgrade with a 101 and then hands the raw connection to a script, so a
// test controls exactly which bytes go out when, and when the connection
// ends.
type scriptedBackend struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup
}

// newScriptedBackend starts a backend that runs script on each upgraded
// connection (br holds what the proxy sent after its request) and closes
// the connection when script returns.
func newScriptedBackend(t *testing.T, script func(c net.Conn, br *bufio.Reader)) *scriptedBackend {
	t.Helper()
	return newScriptedBackendReq(t, func(c net.Conn, br *bufio.Reader, _ *http.Request) { script(c, br) })
}

// newScriptedBackendReq is newScriptedBackend for scripts that look at
// the upgrade request.
func newScriptedBackendReq(t *testing.T, script func(c net.Conn, br *bufio.Reader, req *http.Request)) *scriptedBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sb := &scriptedBackend{addr: ln.Addr().String(), ln: ln}
	sb.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sb.wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				accept := acceptKey(req.Header.Get("Sec-WebSocket-Key"))
				if _, err := c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n")); err != nil {
					return
				}
				script(c, br, req)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		sb.wg.Wait()
	})
	return sb
}

// acceptKey is Sec-WebSocket-Accept for key (RFC 6455 4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// serverFrame is an unmasked frame as a server sends it.
func serverFrame(opcode byte, payload []byte) []byte {
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, payload...)
}

// readFrame reads one frame from br and returns its opcode and unmasked
// payload.
func readFrame(br *bufio.Reader) (opcode byte, payload []byte, err error) {
	opcode, _, payload, err = readFrameFin(br)
	return opcode, payload, err
}

// readFrameFin is readFrame that also says whether the frame is a
// message's last.
func readFrameFin(br *bufio.Reader) (opcode byte, fin bool, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, false, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, false, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, false, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(br, key[:]); err != nil {
			return 0, false, nil, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, false, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return h[0] & 0x0f, h[0]&0x80 != 0, payload, nil
}

// recordingObserver keeps every event it is told of.
type recordingObserver struct {
	mu       sync.Mutex
	upgrades []UpgradeEvent
	tunnels  []TunnelEvent
	refusals []RefusalEvent
}

var _ Observer = (*recordingObserver)(nil)

func (o *recordingObserver) UpgradeDone(e *UpgradeEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.upgrades = append(o.upgrades, *e)
}

func (o *recordingObserver) TunnelClosed(e *TunnelEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.tunnels = append(o.tunnels, *e)
}

func (o *recordingObserver) Refused(e *RefusalEvent) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refusals = append(o.refusals, *e)
}

func (o *recordingObserver) tunnelEvents() []TunnelEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.tunnels)
}

func (o *recordingObserver) refusalEvents() []RefusalEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.refusals)
}

func (o *recordingObserver) upgradeEvents() []UpgradeEvent {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.upgrades)
}

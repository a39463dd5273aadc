package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

const (
	// ioTimeout bounds every dial, handshake, read and write.
	ioTimeout = 10 * time.Second
	// closeWait bounds the close handshake at the end of a connection.
	closeWait = time.Second
	// maxSingleFrame is the largest message sent as a single frame.
	maxSingleFrame = 1 << 20
	// maxSourceIPs bounds what one -source-ips range may expand to.
	maxSourceIPs = 1 << 16
)

// defaultLoopbackSources is the -source-ips default for idle and connrate
// when the target is a 127.x address: 253 addresses of ~28,000 ephemeral
// ports each, so a single address's ports (and its TIME_WAIT sockets) are
// never the limit.
const defaultLoopbackSources = "127.0.0.2-127.0.0.254"

// dialer opens WebSocket connections to one URL, spreading them round-robin
// over the source addresses. It is safe for concurrent use.
type dialer struct {
	url     string
	sources []netip.Addr
	next    atomic.Uint64
	ws      websocket.Dialer
}

// newDialer builds the dialer. For wss:// every handshake is a full TLS 1.3
// handshake: ClientSessionCache stays nil, so nothing is ever resumed.
// The key exchange is pinned to X25519 so that every proxy does the same
// work per handshake whatever its TLS library prefers (Go and OpenSSL 3.5
// would otherwise pick the much larger hybrid X25519MLKEM768, older
// OpenSSL plain X25519).
//
// Messages of up to maxSingleFrame bytes go out as one frame each: gorilla
// otherwise splits a message into frames of its write buffer's size (4 KiB
// by default), which would make large-message runs measure fragmentation.
func newDialer(target string, size int, sources []netip.Addr, insecure, resume bool, caFile, serverName string) (*dialer, error) {
	conf := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		ServerName:         serverName,
		InsecureSkipVerify: insecure,
	}
	if resume {
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(1024)
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA %s: no PEM certificates", caFile)
		}
		conf.RootCAs = pool
	}
	d := &dialer{url: target, sources: sources}
	d.ws = websocket.Dialer{
		NetDialContext:   d.netDial,
		TLSClientConfig:  conf,
		HandshakeTimeout: ioTimeout,
		WriteBufferSize:  min(max(size, 4096), maxSingleFrame),
	}
	return d, nil
}

func (d *dialer) netDial(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: ioTimeout}
	if len(d.sources) > 0 {
		src := d.sources[(d.next.Add(1)-1)%uint64(len(d.sources))]
		nd.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		nd.Control = bindNoPort
	}
	return nd.DialContext(ctx, network, addr)
}

// dial opens one WebSocket connection: TCP, TLS for wss://, the upgrade.
func (d *dialer) dial(ctx context.Context) (*websocket.Conn, error) {
	c, resp, err := d.ws.DialContext(ctx, d.url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("upgrade: %s: %w", resp.Status, err)
		}
		return nil, err
	}
	return c, nil
}

// parseSourceIPs parses -source-ips: a comma-separated list of addresses
// and inclusive ranges FIRST-LAST of one family. "none" or "" means no
// source binding.
func parseSourceIPs(spec string) ([]netip.Addr, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "none" {
		return nil, nil
	}
	var out []netip.Addr
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		firstS, lastS, isRange := strings.Cut(item, "-")
		first, err := netip.ParseAddr(strings.TrimSpace(firstS))
		if err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		last := first
		if isRange {
			if last, err = netip.ParseAddr(strings.TrimSpace(lastS)); err != nil {
				return nil, fmt.Errorf("%q: %w", item, err)
			}
		}
		if first.Zone() != "" || last.Zone() != "" {
			return nil, fmt.Errorf("%q: zones are not supported", item)
		}
		if first.Is4() != last.Is4() {
			return nil, fmt.Errorf("%q: the ends are of different families", item)
		}
		if last.Less(first) {
			return nil, fmt.Errorf("%q: the range runs backwards", item)
		}
		for a := first; ; a = a.Next() {
			if len(out) == maxSourceIPs {
				return nil, fmt.Errorf("%q: more than %d addresses", spec, maxSourceIPs)
			}
			out = append(out, a)
			if a == last {
				break
			}
		}
	}
	return out, nil
}

// isLoopback4 reports whether the URL's host is a literal 127.x address.
func isLoopback4(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.Is4() && a.IsLoopback()
}

// errorKind classifies failures for the summary.
type errorKind int

const (
	errDial  errorKind = iota // TCP connect, TLS handshake or upgrade
	errWrite                  // writing a message
	errRead                   // reading an echo
	errEcho                   // an echo of the wrong type, size or content
	errClose                  // an unexpected close, or a close handshake that went wrong
	numErrorKinds
)

func (k errorKind) String() string {
	switch k {
	case errDial:
		return "dial"
	case errWrite:
		return "write"
	case errRead:
		return "read"
	case errEcho:
		return "echo"
	case errClose:
		return "close"
	}
	return fmt.Sprintf("errorKind(%d)", int(k))
}

// kindError is an error tagged with its kind.
type kindError struct {
	kind errorKind
	err  error
}

func (e *kindError) Error() string { return e.kind.String() + ": " + e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

func tag(kind errorKind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}

// fillPayload fills a message with a recognisable pattern.
func fillPayload(buf []byte) {
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
}

// stampSeq writes seq into the first 8 bytes of a message, when it has them.
func stampSeq(buf []byte, seq uint64) {
	if len(buf) >= 8 {
		binary.LittleEndian.PutUint64(buf, seq)
	}
}

// writeMessage sends buf as one binary message.
func writeMessage(c *websocket.Conn, buf []byte, deadline time.Time) error {
	if err := c.SetWriteDeadline(deadline); err != nil {
		return tag(errWrite, err)
	}
	return tag(errWrite, c.WriteMessage(websocket.BinaryMessage, buf))
}

// readEcho reads one message into buf, which must have room for one byte
// more than the size expected, and checks that it is binary, of that size
// and, for messages of 8 bytes or more, that it carries seq. It does not
// allocate.
func readEcho(c *websocket.Conn, buf []byte, size int, seq uint64, deadline time.Time) error {
	if err := c.SetReadDeadline(deadline); err != nil {
		return tag(errRead, err)
	}
	mt, r, err := c.NextReader()
	if err != nil {
		if isCloseFrame(err) {
			return tag(errClose, err)
		}
		return tag(errRead, err)
	}
	n, err := io.ReadFull(r, buf)
	switch {
	case err == nil:
		return tag(errEcho, fmt.Errorf("echo longer than %d bytes", size))
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
	default:
		return tag(errRead, err)
	}
	switch {
	case mt != websocket.BinaryMessage:
		return tag(errEcho, fmt.Errorf("echo of message type %d, want binary", mt))
	case n != size:
		return tag(errEcho, fmt.Errorf("echo of %d bytes, want %d", n, size))
	case size >= 8 && binary.LittleEndian.Uint64(buf) != seq:
		return tag(errEcho, fmt.Errorf("echo of message %d, want %d", binary.LittleEndian.Uint64(buf), seq))
	}
	return nil
}

// echoOnce sends one message and waits for its echo.
func echoOnce(c *websocket.Conn, buf []byte, size int, seq uint64) error {
	deadline := time.Now().Add(ioTimeout)
	stampSeq(buf[:size], seq)
	if err := writeMessage(c, buf[:size], deadline); err != nil {
		return err
	}
	return readEcho(c, buf, size, seq, deadline)
}

// closeHandshake sends a 1000 close and reads until the peer's close comes
// back, discarding any echoes still in flight. It is the caller's job to
// close the connection afterwards; it must not be called while another
// goroutine reads.
func closeHandshake(c *websocket.Conn) error {
	if err := sendClose(c); err != nil {
		return err
	}
	return awaitClose(c)
}

func sendClose(c *websocket.Conn) error { return sendCloseWithin(c, closeWait) }

// sendCloseWithin sends a 1000 close that must be written within d.
func sendCloseWithin(c *websocket.Conn, d time.Duration) error {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	return tag(errClose, c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(d)))
}

// awaitClose reads until the peer's close frame, which must say 1000.
func awaitClose(c *websocket.Conn) error {
	if err := c.SetReadDeadline(time.Now().Add(closeWait)); err != nil {
		return tag(errClose, err)
	}
	for {
		_, _, err := c.NextReader()
		if err == nil {
			continue
		}
		if isNormalClose(err) {
			return nil
		}
		return tag(errClose, err)
	}
}

// isCloseFrame reports whether err, however wrapped, is a close frame from
// the peer.
func isCloseFrame(err error) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce)
}

// isNormalClose reports whether err, however wrapped, is a 1000 close frame
// from the peer.
func isNormalClose(err error) bool {
	var ce *websocket.CloseError
	return errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure
}

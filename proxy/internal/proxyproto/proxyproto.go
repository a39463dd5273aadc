// Package proxyproto parses PROXY protocol headers, version 1 (a line of
// text) and version 2 (binary), as HAProxy's specification defines them
// (doc/proxy-protocol.txt in HAProxy's sources): the header a load
// balancer puts before a connection's own bytes to say whose connection it
// relays.
//
// Parse works on the bytes received so far and never reads: the accept
// path peeks at the connection and calls it again with more bytes until it
// has an answer, so a header that arrives a byte at a time is read as well
// as one that arrives at once. It is strict: whatever the specification
// does not allow is an error, and an error is reported as soon as the
// bytes that make it one are there.
//
// It is not github.com/pires/go-proxyproto: that package reads from a
// *bufio.Reader it consumes, and refuses a version 1 header that did not
// come in one read.
package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
)

// Header lengths.
const (
	// MaxV1Len is the longest version 1 header, CRLF included (the
	// specification's worst case: "PROXY UNKNOWN" with two full IPv6
	// addresses and ports).
	MaxV1Len = 107
	// MaxV2Len is the longest version 2 header accepted: 16 bytes and
	// the addresses and TLVs after them. The format allows 64 KiB; 16 KiB
	// is HAProxy's default buffer size (tune.bufsize), so whatever HAProxy
	// relays fits.
	MaxV2Len = 16 << 10
	// v2Fixed is the length of a version 2 header before its addresses.
	v2Fixed = 16
)

// The families of a header: a version 2 header's address family and
// transport protocol byte. A version 1 header's TCP4, TCP6 and UNKNOWN are
// given the values of their version 2 equivalents.
const (
	FamilyUnspec byte = 0x00 // AF_UNSPEC, or version 1 UNKNOWN
	TCP4         byte = 0x11 // TCP over IPv4
	TCP6         byte = 0x21 // TCP over IPv6
)

var (
	// ErrIncomplete means the bytes are the beginning of what may still
	// be a valid header: read more.
	ErrIncomplete = errors.New("proxyproto: incomplete header")
	// ErrNotProxy means the bytes do not begin with a PROXY protocol
	// signature: there is no header.
	ErrNotProxy = errors.New("proxyproto: no PROXY protocol header")
)

// Error is a malformed header.
type Error struct {
	Version int // 1 or 2
	Msg     string
}

func (e *Error) Error() string {
	if e.Version == 1 {
		return "proxyproto: malformed v1 header: " + e.Msg
	}
	return "proxyproto: malformed v2 header: " + e.Msg
}

var (
	sigV1 = []byte("PROXY ")
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Header is a parsed header.
type Header struct {
	Version int // 1 or 2
	// Local marks a version 2 LOCAL header: the connection is the load
	// balancer's own (a health check), and its addresses are the real
	// ones.
	Local bool
	// Family is the address family and transport protocol (FamilyUnspec,
	// TCP4, TCP6, or another version 2 value).
	Family byte
	// Source and Destination are the relayed connection's addresses: set
	// for TCP over IPv4 or IPv6 in a header that is not Local, and zero
	// otherwise.
	Source, Destination netip.AddrPort
}

// ClientAddr returns the client's address the header gives, and false
// when the connection's own peer address stands: a LOCAL header, version
// 1 UNKNOWN, and families other than TCP over IPv4 and IPv6 (AF_UNSPEC,
// UDP and Unix sockets, which the specification lets a receiver treat as
// AF_UNSPEC).
func (h Header) ClientAddr() (netip.AddrPort, bool) {
	return h.Source, h.Source.IsValid()
}

// Signature reports whether b begins with a whole PROXY protocol
// signature ("PROXY " or version 2's 12 bytes) and, when it does not,
// whether more bytes could make it one.
func Signature(b []byte) (found, more bool) {
	for _, sig := range [][]byte{sigV1, sigV2} {
		k := min(len(b), len(sig))
		if bytes.Equal(b[:k], sig[:k]) {
			if k == len(sig) {
				return true, false
			}
			more = true
		}
	}
	return false, more
}

// Parse parses the header at the beginning of b and returns it with its
// length in bytes; the bytes after it are not looked at. When b is the
// beginning of what may still be a header, it returns ErrIncomplete and
// the least length b must have for Parse to get further (at most
// MaxV2Len); ErrNotProxy when b does not begin with a signature, and an
// *Error when it begins with a malformed header.
func Parse(b []byte) (Header, int, error) {
	found, more := Signature(b)
	switch {
	case !found && !more:
		return Header{}, 0, ErrNotProxy
	case !found:
		return Header{}, len(b) + 1, ErrIncomplete
	case b[0] == sigV1[0]:
		return parseV1(b)
	}
	return parseV2(b)
}

func errV1(msg string) (Header, int, error) { return Header{}, 0, &Error{Version: 1, Msg: msg} }
func errV2(msg string) (Header, int, error) { return Header{}, 0, &Error{Version: 2, Msg: msg} }

// The protocols of a version 1 line.
var v1Protocols = []struct {
	name   string
	family byte
}{{"TCP4", TCP4}, {"TCP6", TCP6}, {"UNKNOWN", FamilyUnspec}}

// parseV1 parses "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or
// "PROXY UNKNOWN[ anything]\r\n"; b begins with "PROXY ".
func parseV1(b []byte) (Header, int, error) {
	rest := b[len(sigV1):min(len(b), MaxV1Len)]

	// The protocol, checked as soon as its bytes are here: its name, then
	// a space (or, after UNKNOWN, the CRLF).
	var (
		name   string
		family byte
	)
	for _, p := range v1Protocols {
		if k := min(len(rest), len(p.name)); string(rest[:k]) == p.name[:k] {
			name, family = p.name, p.family
			break
		}
	}
	if name == "" || len(rest) > len(name) && rest[len(name)] != ' ' && !(family == FamilyUnspec && rest[len(name)] == '\r') {
		return errV1("the protocol is not TCP4, TCP6 or UNKNOWN")
	}

	// The line: no CR but the one before the LF, and in a TCP line only
	// the characters of addresses and ports.
	end := bytes.IndexByte(rest, '\n')
	line := rest
	if end >= 0 {
		line = rest[:end]
	}
	if cr := bytes.IndexByte(line, '\r'); cr >= 0 && cr < len(line)-1 {
		return errV1("a CR that is not followed by LF")
	}
	if family != FamilyUnspec && len(line) > len(name) {
		for _, c := range line[len(name):] {
			if !isAddrChar(c) {
				return errV1("a character that is not part of an address or port")
			}
		}
	}
	switch {
	case end < 0 && len(sigV1)+len(rest) == MaxV1Len:
		return errV1("no CRLF within 107 bytes")
	case end < 0:
		return Header{}, len(b) + 1, ErrIncomplete
	case end == 0 || rest[end-1] != '\r':
		return errV1("the line ends with LF alone; want CRLF")
	}
	n := len(sigV1) + end + 1
	if family == FamilyUnspec {
		// "The receiver must ignore anything presented before the CRLF."
		return Header{Version: 1, Family: FamilyUnspec}, n, nil
	}
	fields := bytes.Split(rest[:end-1], []byte{' '})
	if len(fields) != 5 {
		return errV1("want the protocol, two addresses and two ports, separated by single spaces")
	}
	src, ok1 := parseV1Addr(fields[1], family)
	dst, ok2 := parseV1Addr(fields[2], family)
	if !ok1 || !ok2 {
		return errV1("an address that is not of the protocol's family")
	}
	sport, ok1 := parseV1Port(fields[3])
	dport, ok2 := parseV1Port(fields[4])
	if !ok1 || !ok2 {
		return errV1("a port that is not a decimal number from 0 to 65535 without leading zeros")
	}
	return Header{
		Version:     1,
		Family:      family,
		Source:      netip.AddrPortFrom(src, sport),
		Destination: netip.AddrPortFrom(dst, dport),
	}, n, nil
}

// isAddrChar reports whether c may appear in the addresses and ports of a
// TCP4 or TCP6 line (or is the CR that ends it).
func isAddrChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' ||
		c == '.' || c == ':' || c == ' ' || c == '\r'
}

// parseV1Addr parses an address of a TCP4 or TCP6 line. It has no zone:
// '%' is not among the line's characters (isAddrChar).
func parseV1Addr(b []byte, family byte) (netip.Addr, bool) {
	a, err := netip.ParseAddr(string(b))
	if err != nil {
		return netip.Addr{}, false
	}
	if family == TCP4 {
		return a, a.Is4()
	}
	return a, a.Is6()
}

// parseV1Port parses a port: 1 to 5 digits, no leading zero, at most 65535.
func parseV1Port(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || len(b) > 1 && b[0] == '0' {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return uint16(n), n <= 0xffff
}

// addrLen is the length of a version 2 address block of a family.
func addrLen(family byte) int {
	switch family >> 4 {
	case 0x1:
		return 12 // two IPv4 addresses, two ports
	case 0x2:
		return 36 // two IPv6 addresses, two ports
	case 0x3:
		return 216 // two Unix socket paths
	}
	return 0
}

// parseV2 parses a binary header; b begins with its 12-byte signature.
func parseV2(b []byte) (Header, int, error) {
	if len(b) > 12 {
		if b[12]>>4 != 2 {
			return errV2("the version is not 2")
		}
		if b[12]&0xf > 1 {
			return errV2("the command is neither LOCAL nor PROXY")
		}
	}
	if len(b) > 13 && (b[13]>>4 > 3 || b[13]&0xf > 2) {
		return errV2("an undefined address family or transport protocol")
	}
	if len(b) < v2Fixed {
		return Header{}, v2Fixed, ErrIncomplete
	}
	local, family := b[12]&0xf == 0, b[13]
	n := v2Fixed + int(binary.BigEndian.Uint16(b[14:16]))
	switch {
	case n > MaxV2Len:
		return errV2("longer than 16 KiB")
	case !local && n < v2Fixed+addrLen(family):
		return errV2("too short for the addresses of its family")
	case len(b) < n:
		return Header{}, n, ErrIncomplete
	}
	h := Header{Version: 2, Local: local, Family: family}
	if local || family != TCP4 && family != TCP6 {
		// LOCAL: "discard the protocol block including the family";
		// other families fall back to AF_UNSPEC, whose addresses a
		// receiver ignores.
		return h, n, nil
	}
	a := b[v2Fixed:n]
	if family == TCP4 {
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
	} else {
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
		h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
	}
	// The TLVs after the addresses are skipped, but they must fill the
	// rest of the header exactly.
	for tlvs := a[addrLen(family):]; len(tlvs) > 0; {
		if len(tlvs) < 3 {
			return errV2("a TLV cut short by the header's end")
		}
		k := 3 + int(binary.BigEndian.Uint16(tlvs[1:3]))
		if k > len(tlvs) {
			return errV2("a TLV longer than the rest of the header")
		}
		tlvs = tlvs[k:]
	}
	return h, n, nil
}

package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// encodeV1 writes h as a version 1 line.
func encodeV1(h Header) []byte {
	proto := map[byte]string{TCP4: "TCP4", TCP6: "TCP6"}[h.Family]
	if proto == "" || !h.Source.IsValid() {
		return []byte("PROXY UNKNOWN\r\n")
	}
	return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", proto,
		h.Source.Addr(), h.Destination.Addr(), h.Source.Port(), h.Destination.Port())
}

// encodeV2 writes h as a binary header followed by tlvs (ignored for LOCAL
// and for families without addresses).
func encodeV2(h Header, tlvs []byte) []byte {
	cmd := byte(0x21)
	if h.Local {
		cmd = 0x20
	}
	var block []byte
	switch {
	case h.Local:
	case h.Source.IsValid() && h.Family == TCP4:
		s, d := h.Source.Addr().As4(), h.Destination.Addr().As4()
		block = append(append(block, s[:]...), d[:]...)
	case h.Source.IsValid() && h.Family == TCP6:
		s, d := h.Source.Addr().As16(), h.Destination.Addr().As16()
		block = append(append(block, s[:]...), d[:]...)
	default:
		block = make([]byte, addrLen(h.Family))
	}
	if h.Source.IsValid() && !h.Local {
		block = binary.BigEndian.AppendUint16(block, h.Source.Port())
		block = binary.BigEndian.AppendUint16(block, h.Destination.Port())
		block = append(block, tlvs...)
	}
	b := append(bytes.Clone(sigV2), cmd, h.Family)
	b = binary.BigEndian.AppendUint16(b, uint16(len(block)))
	return append(b, block...)
}

// tlv is one encoded TLV.
func tlv(typ byte, value string) []byte {
	return append([]byte{typ, byte(len(value) >> 8), byte(len(value))}, value...)
}

func hexBytes(s string) []byte {
	var b []byte
	for _, f := range strings.Fields(s) {
		var v byte
		if _, err := fmt.Sscanf(f, "%02x", &v); err != nil {
			panic(err)
		}
		b = append(b, v)
	}
	return b
}

var (
	src4 = netip.MustParseAddrPort("192.0.2.1:56324")
	dst4 = netip.MustParseAddrPort("198.51.100.2:443")
	src6 = netip.MustParseAddrPort("[2001:db8::1]:1")
	dst6 = netip.MustParseAddrPort("[2001:db8::2]:65535")

	// clientHello is what follows the header: the start of a TLS record.
	clientHello = []byte{0x16, 0x03, 0x01, 0x02, 0x00}
)

// maxV1 is the specification's longest line (107 bytes).
const maxV1 = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want Header
	}{
		{"v1 TCP4", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"),
			Header{Version: 1, Family: TCP4, Source: src4, Destination: dst4}},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::1 2001:DB8::2 1 65535\r\n"),
			Header{Version: 1, Family: TCP6, Source: src6, Destination: dst6}},
		{"v1 TCP6 with an IPv4-mapped address", []byte("PROXY TCP6 ::ffff:192.0.2.1 ::1 0 443\r\n"),
			Header{Version: 1, Family: TCP6, Source: netip.MustParseAddrPort("[::ffff:192.0.2.1]:0"), Destination: netip.MustParseAddrPort("[::1]:443")}},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1}},
		{"v1 UNKNOWN at the longest", []byte(maxV1), Header{Version: 1}},
		{"v1 UNKNOWN with anything before the CRLF", []byte("PROXY UNKNOWN \x00\xff hello\r\n"), Header{Version: 1}},
		// The specification's example of a v2 header (written by HAProxy).
		{"v2 TCP4 from HAProxy", hexBytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 21 11 00 0c ac 13 00 01 ac 13 00 03 a6 52 00 50"),
			Header{Version: 2, Family: TCP4, Source: netip.MustParseAddrPort("172.19.0.1:42578"), Destination: netip.MustParseAddrPort("172.19.0.3:80")}},
		{"v2 TCP6 with TLVs", encodeV2(Header{Family: TCP6, Source: src6, Destination: dst6}, append(tlv(0x01, "http/1.1"), tlv(0xea, "\x01vpce-0123456789abcdef")...)),
			Header{Version: 2, Family: TCP6, Source: src6, Destination: dst6}},
		{"v2 TCP4 with an empty TLV", encodeV2(Header{Family: TCP4, Source: src4, Destination: dst4}, tlv(0x04, "")),
			Header{Version: 2, Family: TCP4, Source: src4, Destination: dst4}},
		{"v2 LOCAL", hexBytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 20 00 00 00"), Header{Version: 2, Local: true}},
		{"v2 LOCAL with an address block", hexBytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 20 11 00 0c 01 02 03 04 05 06 07 08 00 01 00 02"),
			Header{Version: 2, Local: true, Family: TCP4}},
		{"v2 LOCAL with a short block", hexBytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 20 21 00 03 01 02 03"),
			Header{Version: 2, Local: true, Family: TCP6}},
		{"v2 PROXY AF_UNSPEC", hexBytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 21 00 00 00"), Header{Version: 2}},
		{"v2 PROXY UDP over IPv4", encodeV2(Header{Family: 0x12}, nil), Header{Version: 2, Family: 0x12}},
		{"v2 PROXY Unix stream", encodeV2(Header{Family: 0x31}, nil), Header{Version: 2, Family: 0x31}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append(bytes.Clone(tc.in), clientHello...)
			h, n, err := Parse(in)
			if err != nil || n != len(tc.in) || h != tc.want {
				t.Fatalf("Parse(%q) = %+v, %d, %v; want %+v, %d, nil", in, h, n, err, tc.want, len(tc.in))
			}
			// Every shorter prefix is incomplete, and asks for no byte
			// past the header: a client waiting for the server (or TLS
			// bytes that come later) never stalls it.
			for k := range len(tc.in) {
				_, need, err := Parse(tc.in[:k])
				if !errors.Is(err, ErrIncomplete) || need <= k || need > len(tc.in) {
					t.Fatalf("Parse(first %d bytes) = %d, %v; want ErrIncomplete asking for %d..%d bytes", k, need, err, k+1, len(tc.in))
				}
			}
			addr, ok := h.ClientAddr()
			if wantOK := tc.want.Source.IsValid(); ok != wantOK || addr != tc.want.Source {
				t.Errorf("ClientAddr() = %v, %v; want %v, %v", addr, ok, tc.want.Source, wantOK)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	v2 := func(s string) []byte { return hexBytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a " + s) }
	tests := []struct {
		name string
		in   []byte
		want error // ErrNotProxy, or nil for a *Error
	}{
		{"TLS", clientHello, ErrNotProxy},
		{"HTTP", []byte("GET / HTTP/1.1\r\n"), ErrNotProxy},
		{"PROXY without its space", []byte("PROXYTCP4"), ErrNotProxy},
		{"lower case", []byte("proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n"), ErrNotProxy},
		{"v2 signature broken at its end", []byte("\r\n\r\n\x00\r\nQUIT\r"), ErrNotProxy},
		{"unknown protocol", []byte("PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n"), nil},
		{"protocol without its space", []byte("PROXY TCP4\t192.0.2.1"), nil},
		{"UNKNOWN run on", []byte("PROXY UNKNOWNX\r\n"), nil},
		{"empty line", []byte("PROXY \r\n"), nil},
		{"LF alone", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\n"), nil},
		{"UNKNOWN with LF alone", []byte("PROXY UNKNOWN\n"), nil},
		{"CR alone", []byte("PROXY TCP4 192.0.2.1\r198.51.100.2 56324 443\r\n"), nil},
		{"CR alone in UNKNOWN", []byte("PROXY UNKNOWN a\rb\r\n"), nil},
		{"two spaces", []byte("PROXY TCP4 192.0.2.1  198.51.100.2 56324 443\r\n"), nil},
		{"trailing space", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 \r\n"), nil},
		{"a field too many", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 1\r\n"), nil},
		{"a field missing", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n"), nil},
		{"leading zero in an address", []byte("PROXY TCP4 192.0.2.01 198.51.100.2 56324 443\r\n"), nil},
		{"leading zero in a port", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 5632 0443\r\n"), nil},
		{"port 00", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 00 443\r\n"), nil},
		{"port out of range", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n"), nil},
		{"six-digit port", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 100000 443\r\n"), nil},
		{"signed port", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 +1 443\r\n"), nil},
		{"IPv6 in TCP4", []byte("PROXY TCP4 2001:db8::1 198.51.100.2 1 443\r\n"), nil},
		{"IPv4 in TCP6", []byte("PROXY TCP6 192.0.2.1 2001:db8::2 1 443\r\n"), nil},
		{"zone", []byte("PROXY TCP6 fe80::1%eth0 2001:db8::2 1 443\r\n"), nil},
		{"a name", []byte("PROXY TCP4 localhost 198.51.100.2 1 443\r\n"), nil},
		{"no CRLF in 107 bytes", []byte(strings.Replace(maxV1, "\r\n", "ff", 1)), nil},
		{"108 bytes", []byte(strings.Replace(maxV1, "PROXY UNKNOWN", "PROXY UNKNOWN ", 1)), nil},
		{"v2 version 1", v2("11 11 00 0c 01 02 03 04 05 06 07 08 00 01 00 02"), nil},
		{"v2 command 2", v2("22 11 00 0c 01 02 03 04 05 06 07 08 00 01 00 02"), nil},
		{"v2 family 4", v2("21 41 00 00"), nil},
		{"v2 transport 3", v2("21 13 00 0c 01 02 03 04 05 06 07 08 00 01 00 02"), nil},
		{"v2 LOCAL with an undefined family", v2("20 f0 00 00"), nil},
		{"v2 TCP4 too short", v2("21 11 00 0b 01 02 03 04 05 06 07 08 00 01 00"), nil},
		{"v2 TCP6 too short", v2("21 21 00 0c 01 02 03 04 05 06 07 08 00 01 00 02"), nil},
		{"v2 Unix too short", v2("21 31 00 24"), nil},
		{"v2 longer than 16 KiB", v2("21 11 40 01"), nil},
		{"v2 TLV past the end", encodeV2(Header{Family: TCP4, Source: src4, Destination: dst4}, []byte{0x01, 0x00, 0x05, 'h', 't'}), nil},
		{"v2 TLV cut short", encodeV2(Header{Family: TCP4, Source: src4, Destination: dst4}, []byte{0x01, 0x00}), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := Parse(tc.in)
			var pe *Error
			switch {
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("Parse(%q) = %+v, %d, %v; want %v", tc.in, h, n, err, tc.want)
			case tc.want == nil && !errors.As(err, &pe):
				t.Errorf("Parse(%q) = %+v, %d, %v; want a malformed header *Error", tc.in, h, n, err)
			}
		})
	}
}

func TestParseIncomplete(t *testing.T) {
	tests := []struct {
		in   []byte
		need int
	}{
		{nil, 1},
		{[]byte("P"), 2},
		{[]byte("PROXY TCP4 192.0.2.1"), 21},
		{[]byte("PROXY UNKNOWN\r"), 15},
		{[]byte("\r\n\r\n\x00"), 6},
		{[]byte("\r\n\r\n\x00\r\nQUIT\n\x21"), 16},
		{hexBytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 21 11 00 0c"), 28},
		{hexBytes("0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a 21 11 3f f0 01 02"), 16 << 10},
	}
	for _, tc := range tests {
		if _, need, err := Parse(tc.in); !errors.Is(err, ErrIncomplete) || need != tc.need {
			t.Errorf("Parse(%q) = %d, %v; want ErrIncomplete asking for %d bytes", tc.in, need, err, tc.need)
		}
	}
}

// An error is reported as soon as the bytes that make one are there,
// before the line's end.
func TestParseFailsEarly(t *testing.T) {
	for _, in := range []string{
		"PROXY X",
		"PROXY TCP4x",
		"PROXY TCP4 192.0.2.1 example",
		"PROXY TCP4 192.0.2.1\r ",
		"PROXY TCP6 fe80::1%",
		"\r\n\r\n\x00\r\nQUIT\n\x31",
		"\r\n\r\n\x00\r\nQUIT\n\x21\x14",
	} {
		var pe *Error
		if _, _, err := Parse([]byte(in)); !errors.As(err, &pe) {
			t.Errorf("Parse(%q) = %v; want a malformed header *Error at once", in, err)
		}
	}
}

func TestSignature(t *testing.T) {
	tests := []struct {
		in          string
		found, more bool
	}{
		{"", false, true},
		{"PROX", false, true},
		{"PROXY ", true, false},
		{"PROXY TCP4", true, false},
		{"\r\n\r\n\x00\r\nQUIT", false, true},
		{"\r\n\r\n\x00\r\nQUIT\n", true, false},
		{"\x16\x03\x01", false, false},
		{"PROXYZ", false, false},
		{"\r\n\r\n\x00\r\nQUIT\r", false, false},
	}
	for _, tc := range tests {
		if found, more := Signature([]byte(tc.in)); found != tc.found || more != tc.more {
			t.Errorf("Signature(%q) = %v, %v; want %v, %v", tc.in, found, more, tc.found, tc.more)
		}
	}
}

// The version 1 and 2 forms of one address parse to the same header, but
// for the version.
func TestVersionsAgree(t *testing.T) {
	for _, h := range []Header{
		{Family: TCP4, Source: src4, Destination: dst4},
		{Family: TCP6, Source: src6, Destination: dst6},
		{Family: TCP6, Source: netip.MustParseAddrPort("[::ffff:203.0.113.9]:7"), Destination: dst6},
	} {
		h1, _, err1 := Parse(encodeV1(h))
		h2, _, err2 := Parse(encodeV2(h, nil))
		h1.Version, h2.Version = 0, 0
		if err1 != nil || err2 != nil || h1 != h || h2 != h {
			t.Errorf("v1 gives %+v, %v; v2 gives %+v, %v; want %+v", h1, err1, h2, err2, h)
		}
	}
}

type outcome int

const (
	complete outcome = iota
	incomplete
	notProxy
	malformed
)

func classify(t *testing.T, err error) outcome {
	var pe *Error
	switch {
	case err == nil:
		return complete
	case errors.Is(err, ErrIncomplete):
		return incomplete
	case errors.Is(err, ErrNotProxy):
		return notProxy
	case errors.As(err, &pe):
		return malformed
	}
	t.Fatalf("Parse() error %v (%T) is none of ErrIncomplete, ErrNotProxy and *Error", err, err)
	return 0
}

// FuzzProxyHeader checks that Parse never panics; that what it says of a
// stream does not depend on where the stream is cut (the accept path
// parses what has arrived, again and again: a header is incomplete up to
// its last byte and complete, with the same value, from there on; an
// error stays an error); that it never asks for bytes past a header; and
// that an accepted header re-encodes to the same addresses, in either
// version. Its seeds, valid headers and broken ones, are in
// testdata/fuzz/FuzzProxyHeader.
func FuzzProxyHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		final := classify(t, err)
		found, more := Signature(b)
		if (final == notProxy) != (!found && !more) {
			t.Fatalf("Parse() = %v but Signature() = %v, %v", err, found, more)
		}
		switch final {
		case complete:
			if n < 1 || n > len(b) || n > MaxV2Len {
				t.Fatalf("Parse() length %d of %d bytes", n, len(b))
			}
		case incomplete:
			if n <= len(b) || n > MaxV2Len {
				t.Fatalf("Parse() of %d bytes asks for %d", len(b), n)
			}
		}
		// The prefixes: incomplete, then one outcome for good.
		limit := min(len(b), 2*MaxV1Len)
		if final == complete {
			limit = min(len(b), n+8)
		}
		prev := incomplete
		for k := 0; k <= limit; k++ {
			hk, nk, errk := Parse(b[:k])
			o := classify(t, errk)
			switch {
			case prev != incomplete && o != prev:
				t.Fatalf("Parse(first %d bytes) = %v after a shorter prefix gave %v", k, errk, prev)
			case o == complete && (hk != h || nk != n):
				t.Fatalf("Parse(first %d bytes) = %+v, %d; all %d give %+v, %d", k, hk, nk, len(b), h, n)
			case o == incomplete && final == complete && nk > n:
				t.Fatalf("Parse(first %d bytes) asks for %d bytes; the header has %d", k, nk, n)
			case o == incomplete && nk <= k:
				t.Fatalf("Parse(first %d bytes) asks for %d bytes", k, nk)
			}
			prev = o
		}
		if final != complete {
			return
		}
		if _, ok := h.ClientAddr(); ok != (!h.Local && (h.Family == TCP4 || h.Family == TCP6)) {
			t.Fatalf("ClientAddr() ok = %v for %+v", ok, h)
		}
		again, _, err := Parse(encodeV1(h))
		if h.Version == 2 {
			again, _, err = Parse(encodeV2(h, nil))
		}
		if err != nil || again != h {
			t.Fatalf("%+v re-encoded parses to %+v, %v", h, again, err)
		}
		if addr, ok := h.ClientAddr(); ok {
			other, _, err := Parse(encodeV2(h, nil))
			if h.Version == 2 {
				other, _, err = Parse(encodeV1(h))
			}
			if got, _ := other.ClientAddr(); err != nil || got != addr || other.Destination != h.Destination || other.Family != h.Family {
				t.Fatalf("%+v in the other version parses to %+v, %v", h, other, err)
			}
		}
	})
}

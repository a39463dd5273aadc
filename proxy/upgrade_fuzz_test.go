package proxy

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// upgradeVerdict parses raw as net/http's server does and judges it as
// ServeHTTP does: whether it asks for a WebSocket upgrade, and
// validateUpgrade's answer. parsed is false when http.ReadRequest refuses
// raw (net/http answers 400 before wsgate sees it).
func upgradeVerdict(raw []byte, rt *Route) (upgrade bool, status int, reason string, parsed bool) {
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return false, 0, "", false
	}
	status, reason = validateUpgrade(r, rt)
	return isWebSocketUpgrade(r), status, reason, true
}

// headerLines splits a request's head into its request line and header
// lines, and returns what follows the blank line; ok is false when the
// head is not in plain CRLF lines (bare LFs, continuation lines), which a
// reordering would change the meaning of.
func headerLines(raw []byte) (first []byte, lines [][]byte, rest []byte, ok bool) {
	head, rest, found := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !found {
		return nil, nil, nil, false
	}
	all := bytes.Split(head, []byte("\r\n"))
	for _, l := range all {
		if bytes.ContainsAny(l, "\r\n") || len(l) == 0 || l[0] == ' ' || l[0] == '\t' {
			return nil, nil, nil, false
		}
	}
	return all[0], all[1:], rest, true
}

func joinRequest(first []byte, lines [][]byte, rest []byte) []byte {
	return append(bytes.Join(append([][]byte{first}, lines...), []byte("\r\n")), append([]byte("\r\n\r\n"), rest...)...)
}

// FuzzValidateUpgrade parses arbitrary request bytes with http.ReadRequest
// and judges them with validateUpgrade (for a route with the fuzzer's
// allowed origins, space-separated). It never panics; it answers 0, 400
// or 403; a request it lets through has GET, HTTP/1.1 and a 16-byte key;
// and its verdict does not depend on the order of the header lines or the
// case of header names, which HTTP leaves free (a proxy and its backend
// that read a repeated header differently would disagree on the request).
// Seeds in testdata/fuzz/FuzzValidateUpgrade.
func FuzzValidateUpgrade(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte, origins string, seed uint64) {
		rt := &Route{Pool: "app"}
		if origins != "" {
			rt.AllowedOrigins = strings.Fields(origins)
		}
		upgrade, status, reason, parsed := upgradeVerdict(raw, rt)
		if !parsed {
			return
		}
		switch status {
		case 0:
			r, _ := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
			key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key"))
			if r.Method != http.MethodGet || !r.ProtoAtLeast(1, 1) || err != nil || len(key) != 16 {
				t.Fatalf("validateUpgrade(%q) let through a request without GET, HTTP/1.1 or a 16-byte key", raw)
			}
		case http.StatusBadRequest, http.StatusForbidden:
			if reason == "" {
				t.Fatalf("validateUpgrade(%q) = %d without a reason", raw, status)
			}
		default:
			t.Fatalf("validateUpgrade(%q) = %d, %q", raw, status, reason)
		}

		first, lines, rest, ok := headerLines(raw)
		if !ok {
			return
		}
		reversed := make([][]byte, len(lines))
		for i, l := range lines {
			reversed[len(lines)-1-i] = l
		}
		shuffled := slices.Clone(lines)
		rand.New(rand.NewPCG(seed, 0)).Shuffle(len(shuffled), func(i, j int) {
			shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
		})
		lower := make([][]byte, len(lines))
		for i, l := range lines {
			lower[i] = l
			if name, value, ok := bytes.Cut(l, []byte(":")); ok {
				lower[i] = append(bytes.ToLower(name), append([]byte(":"), value...)...)
			}
		}
		for _, v := range []struct {
			name  string
			lines [][]byte
		}{{"reversed", reversed}, {"shuffled", shuffled}, {"lower-case names", lower}} {
			other := joinRequest(first, v.lines, rest)
			u, s, why, parsed := upgradeVerdict(other, rt)
			if parsed && (u != upgrade || s != status) {
				t.Fatalf("%q: upgrade %v, %d %q\nwith its header lines %s, %q: upgrade %v, %d %q",
					raw, upgrade, status, reason, v.name, other, u, s, why)
			}
		}
	})
}

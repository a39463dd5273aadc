package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzConfigParse checks that Parse never panics and that, when it fails,
// every error it returns is an *Error with a position.
func FuzzConfigParse(f *testing.F) {
	f.Setenv(AdminTokenEnv, "") // its errors have no position in the file
	for _, pattern := range []string{"testdata/good/*.yaml", "testdata/bad/*.yaml", "../examples/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte(""))
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("<<: {listen: x}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Relative certificate paths resolve against testdata/good, where
		// the seeds expect ../certs.
		c, err := Parse("testdata/good/fuzz.yaml", data)
		if err == nil {
			if c == nil {
				t.Fatal("Parse() = nil, nil")
			}
			return
		}
		if c != nil {
			t.Fatalf("Parse() returned a *Config and an error: %v", err)
		}
		for _, e := range configErrors(t, err) {
			if e.File != "testdata/good/fuzz.yaml" || e.Msg == "" {
				t.Errorf("error %q: want File testdata/good/fuzz.yaml and a message", e)
			}
		}
	})
}

// TestParseAliasExpansion checks that a document made to expand
// exponentially through aliases and merge keys is rejected quickly.
func TestParseAliasExpansion(t *testing.T) {
	var b strings.Builder
	b.WriteString("listen: \":0\"\nx:\n  - &m0 {listen: \":0\"}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "  - &m%d {<<: [*m%d, *m%d]}\n", i, i-1, i-1)
	}
	b.WriteString("admin: {<<: [*m40, *m40]}\n")
	c, err := Parse("laughs.yaml", []byte(b.String()))
	if err == nil {
		t.Fatalf("Parse() = %+v, nil; want errors", c)
	}
	found := false
	for _, e := range configErrors(t, err) {
		found = found || strings.Contains(e.Msg, "too many values through aliases")
	}
	if !found {
		t.Errorf("Parse() errors = %v; want one about alias expansion", err)
	}
}

// hostOK reports whether h is what a host may be: an IP address (with a
// zone only if IPv6) or a DNS name (labels of letters, digits, '-' and
// '_', an optional final dot).
func hostOK(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Zone() == "" || a.Is6()
	}
	labels := strings.Split(strings.TrimSuffix(h, "."), ".")
	for _, l := range labels {
		if l == "" || strings.ContainsFunc(l, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_')
		}) {
			return false
		}
	}
	return true
}

// portOK reports whether p is a port number from min to 65535 in digits.
func portOK(p string, min int) bool {
	n, err := strconv.Atoi(p)
	return err == nil && strings.Trim(p, "0123456789") == "" && n >= min && n <= 65535
}

// FuzzAddress checks the rules of listener and backend addresses and of
// proxy_protocol's blocks: they never panic, and what they accept is what
// the listener, the dialer and the accept path then use. An address
// splits with net.SplitHostPort and joins back to itself (no brackets
// around a name, say), its port is digits in range, its host an IP
// address or a DNS name; a backend's unix: path is absolute. A block
// parses with netip.ParsePrefix, is masked and not IPv4-mapped, and prints
// back to the same block. Seeds in testdata/fuzz/FuzzAddress.
func FuzzAddress(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		for _, rule := range []struct {
			name      string
			check     func(string) string
			emptyHost bool
			minPort   int
		}{
			{"listen", checkListenAddr, true, 0},
			{"backend", checkBackendAddr, false, 1},
		} {
			if rule.check(s) != "" {
				continue
			}
			if path, ok := strings.CutPrefix(s, "unix:"); ok && rule.name == "backend" {
				if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") {
					t.Errorf("%s address %q accepted: not unix: and an absolute path", rule.name, s)
				}
				continue
			}
			host, port, err := net.SplitHostPort(s)
			switch {
			case err != nil:
				t.Errorf("%s address %q accepted; net.SplitHostPort: %v", rule.name, s, err)
			case net.JoinHostPort(host, port) != s:
				t.Errorf("%s address %q accepted; it splits into %q and %q, which join as %q", rule.name, s, host, port, net.JoinHostPort(host, port))
			case !portOK(port, rule.minPort):
				t.Errorf("%s address %q accepted with port %q", rule.name, s, port)
			case host == "" && !rule.emptyHost, host != "" && !hostOK(host):
				t.Errorf("%s address %q accepted with host %q", rule.name, s, host)
			}
		}
		if checkCIDR(s) == "" {
			p, err := netip.ParsePrefix(s)
			switch {
			case err != nil:
				t.Errorf("CIDR %q accepted; netip.ParsePrefix: %v", s, err)
			case p != p.Masked() || p.Addr().Is4In6():
				t.Errorf("CIDR %q accepted: not masked, or IPv4-mapped", s)
			case netip.MustParsePrefix(p.String()) != p:
				t.Errorf("CIDR %q accepted; it prints as %s, which parses to another block", s, p)
			}
		}
	})
}

// FuzzOrigin checks the rule of allowed_origins: it never panics, and
// what it accepts is an origin as browsers send it, scheme://host[:port]
// and nothing else, that url.Parse reads back to the same (but for the
// case of the scheme): http or https, a host that is an IP address or a
// DNS name, a port from 1 to 65535 when there is a colon. Seeds in
// testdata/fuzz/FuzzOrigin.
func FuzzOrigin(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		if checkOrigin(s) != "" {
			return
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("origin %q accepted; url.Parse: %v", s, err)
		}
		hostport := u.Hostname()
		if strings.Contains(hostport, ":") {
			hostport = "[" + hostport + "]"
		}
		if u.Port() != "" {
			hostport += ":" + u.Port()
		}
		switch {
		case u.Scheme != "http" && u.Scheme != "https":
			t.Errorf("origin %q accepted with scheme %q", s, u.Scheme)
		case !strings.EqualFold(u.Scheme+"://"+u.Host, s) || u.Opaque != "" || u.User != nil || u.RawPath != "":
			t.Errorf("origin %q accepted; url.Parse reads %#v", s, u)
		case hostport != u.Host:
			t.Errorf("origin %q accepted; its host %q is not host[:port]", s, u.Host)
		case !hostOK(u.Hostname()), u.Port() != "" && !portOK(u.Port(), 1):
			t.Errorf("origin %q accepted with host %q and port %q", s, u.Hostname(), u.Port())
		}
	})
}

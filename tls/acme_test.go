package tls

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeDirectory is an ACME directory that counts requests and answers
// every one with a problem document, so a test can assert that the CA was
// (or was not) asked. The status is 403: the ACME client retries 5xx and
// 429 answers with backoff for minutes.
func fakeDirectory(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"type":"urn:ietf:params:acme:error:unauthorized","detail":"the CA says no"}`))
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// caFile writes srv's certificate as a PEM bundle and returns its path.
func caFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	return path
}

// syncBuffer is a log sink safe for concurrent handshakes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestACMERouting(t *testing.T) {
	t.Parallel()
	dirSrv, requests := fakeDirectory(t)
	static := validPair(t, "static.example.com", "*.wild.example.com")
	logs := newSyncBuffer()
	opts := func(certs ...tls.Certificate) Options {
		return Options{
			Certs: certs,
			ACME: &ACMEOptions{
				Domains:         []string{"acme.example.com", "Both.Example.com"},
				CacheDir:        filepath.Join(t.TempDir(), "cache"),
				DirectoryURL:    dirSrv.URL,
				DirectoryCAFile: caFile(t, dirSrv),
			},
			Logger: slog.New(slog.NewTextHandler(logs, nil)),
		}
	}
	withStatic := newTestProvider(t, opts(static.tlsCert(t)))
	acmeOnly := newTestProvider(t, opts())

	if got, want := withStatic.TLSConfig().NextProtos, []string{"http/1.1", "acme-tls/1"}; !slices.Equal(got, want) {
		t.Errorf("NextProtos = %q, want %q", got, want)
	}

	// Names a static certificate covers never reach the CA.
	addr := serve(t, withStatic.TLSConfig())
	for _, name := range []string{"static.example.com", "x.wild.example.com"} {
		c, err := dial(t, addr, &tls.Config{RootCAs: roots(static), ServerName: name})
		if err != nil {
			t.Errorf("handshake for %s: %v", name, err)
			continue
		}
		if got := servedCN(c); got != "static.example.com" {
			t.Errorf("served %q for %s, want the static certificate", got, name)
		}
	}
	// Unknown names get the static default when there is one...
	if c, err := dial(t, addr, verifyChainOnly(roots(static), "unknown.example.com")); err != nil {
		t.Errorf("handshake for an unknown name with a static default: %v", err)
	} else if got := servedCN(c); got != "static.example.com" {
		t.Errorf("served %q for an unknown name, want the static default", got)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the CA got %d requests for static and unknown names, want 0", n)
	}

	// ...and a TLS alert without one, logged once however many come.
	addr = serve(t, acmeOnly.TLSConfig())
	for _, name := range []string{"unknown.example.com", "other.example.com", ""} {
		if _, err := dial(t, addr, &tls.Config{ServerName: name, InsecureSkipVerify: true}); err == nil {
			t.Errorf("handshake for %q without a certificate succeeded", name)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the CA got %d requests for unknown names, want 0", n)
	}
	if n := strings.Count(logs.String(), "no certificate for server name"); n != 1 {
		t.Errorf("logged %d refusals, want 1:\n%s", n, logs)
	}

	// An ACME domain asks the CA; its failure is a TLS alert, and the CA's
	// message is logged.
	for range 2 {
		if _, err := dial(t, addr, &tls.Config{ServerName: "ACME.example.com", InsecureSkipVerify: true}); err == nil {
			t.Error("handshake for an ACME domain succeeded with the CA refusing")
		}
	}
	if requests.Load() == 0 {
		t.Error("the CA got no request for an ACME domain")
	}
	out := logs.String()
	if !strings.Contains(out, "the CA says no") {
		t.Errorf("log lacks the CA's message:\n%s", out)
	}
	if n := strings.Count(out, "acme certificate unavailable"); n != 1 {
		t.Errorf("logged %d certificate failures in 2 handshakes, want 1:\n%s", n, out)
	}
}

func TestACMEOptionsErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	writeFile(t, notPEM, []byte("hello"))
	file := filepath.Join(dir, "file")
	writeFile(t, file, nil)
	tests := []struct {
		name string
		opts ACMEOptions
		want []string
	}{
		{name: "no domains", opts: ACMEOptions{CacheDir: dir}, want: []string{"no domains"}},
		{name: "wildcard", opts: ACMEOptions{Domains: []string{"*.example.com"}, CacheDir: dir}, want: []string{"wildcard certificates need the DNS-01 challenge"}},
		{name: "single label and IP", opts: ACMEOptions{Domains: []string{"localhost", "192.0.2.1"}, CacheDir: dir}, want: []string{"single-label", "IP address"}},
		{name: "no cache dir", opts: ACMEOptions{Domains: []string{"a.example.com"}}, want: []string{"no cache directory"}},
		{name: "cache dir is a file", opts: ACMEOptions{Domains: []string{"a.example.com"}, CacheDir: file}, want: []string{"create ACME cache directory"}},
		{name: "CA file missing", opts: ACMEOptions{Domains: []string{"a.example.com"}, CacheDir: dir, DirectoryCAFile: filepath.Join(dir, "missing.pem")}, want: []string{"missing.pem"}},
		{name: "CA file not PEM", opts: ACMEOptions{Domains: []string{"a.example.com"}, CacheDir: dir, DirectoryCAFile: notPEM}, want: []string{"no PEM certificate in CA file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewProvider(Options{ACME: &tc.opts, Logger: discardLogger()})
			if err == nil {
				t.Fatal("NewProvider() = nil error, want one")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewProvider() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestACMECacheDirMode(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a", "cache")
	newTestProvider(t, Options{ACME: &ACMEOptions{Domains: []string{"a.example.com"}, CacheDir: dir, DirectoryURL: "https://127.0.0.1:1/dir"}})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("cache_dir mode = %v, want 0700", got)
	}
}

// ACME without static certificates may reload to an empty file list.
func TestACMESetFilesEmpty(t *testing.T) {
	t.Parallel()
	p := newTestProvider(t, Options{ACME: &ACMEOptions{Domains: []string{"a.example.com"}, CacheDir: t.TempDir(), DirectoryURL: "https://127.0.0.1:1/dir"}})
	if err := p.SetFiles(nil); err != nil {
		t.Errorf("SetFiles(nil) with ACME = %v, want nil", err)
	}
	static := newTestProvider(t, Options{Files: []CertFile{validPair(t, "example.com").write(t, t.TempDir(), "site")}})
	if err := static.SetFiles(nil); !errors.Is(err, ErrNoCertificates) {
		t.Errorf("SetFiles(nil) without ACME = %v, want ErrNoCertificates", err)
	}
}

func TestHTTPHandler(t *testing.T) {
	t.Parallel()
	static := newTestProvider(t, Options{Certs: []tls.Certificate{validPair(t, "example.com").tlsCert(t)}, HTTPSPort: 443})
	withACME := newTestProvider(t, Options{
		ACME:      &ACMEOptions{Domains: []string{"ws.example.com"}, CacheDir: t.TempDir(), DirectoryURL: "https://127.0.0.1:1/dir"},
		HTTPSPort: 8443,
	})
	tests := []struct {
		name     string
		h        http.Handler
		method   string
		host     string
		target   string
		wantCode int
		wantLoc  string
	}{
		{name: "static, port 443 left out", h: static.HTTPHandler(nil), method: "GET", host: "example.com:80", target: "/ws?a=1&b=%20", wantCode: 308, wantLoc: "https://example.com/ws?a=1&b=%20"},
		{name: "POST keeps its method", h: static.HTTPHandler(nil), method: "POST", host: "example.com", target: "/api", wantCode: 308, wantLoc: "https://example.com/api"},
		{name: "IPv6 host", h: static.HTTPHandler(nil), method: "GET", host: "[::1]:80", target: "/", wantCode: 308, wantLoc: "https://[::1]/"},
		{name: "TLS port added", h: withACME.HTTPHandler(nil), method: "GET", host: "ws.example.com:8080", target: "/x", wantCode: 308, wantLoc: "https://ws.example.com:8443/x"},
		{name: "explicit port", h: static.HTTPHandler(RedirectToHTTPS(9443)), method: "GET", host: "[::1]", target: "/", wantCode: 308, wantLoc: "https://[::1]:9443/"},
		{name: "no host", h: static.HTTPHandler(nil), method: "GET", host: "", target: "/", wantCode: 400},
		// The challenge path goes to autocert, which has no token: 404,
		// not a redirect, and the host policy passes despite the :port.
		{name: "challenge with port", h: withACME.HTTPHandler(nil), method: "GET", host: "ws.example.com:5002", target: "/.well-known/acme-challenge/tok", wantCode: 404},
		{name: "challenge for another name", h: withACME.HTTPHandler(nil), method: "GET", host: "evil.example.com", target: "/.well-known/acme-challenge/tok", wantCode: 403},
		{name: "static has no challenges", h: static.HTTPHandler(nil), method: "GET", host: "example.com", target: "/.well-known/acme-challenge/tok", wantCode: 308, wantLoc: "https://example.com/.well-known/acme-challenge/tok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(tc.method, "http://placeholder"+tc.target, nil)
			r.Host = tc.host
			w := httptest.NewRecorder()
			tc.h.ServeHTTP(w, r)
			if w.Code != tc.wantCode || w.Header().Get("Location") != tc.wantLoc {
				t.Errorf("%s %s Host %q = %d Location %q, want %d %q", tc.method, tc.target, tc.host, w.Code, w.Header().Get("Location"), tc.wantCode, tc.wantLoc)
			}
		})
	}
}

func TestLogLimiter(t *testing.T) {
	t.Parallel()
	l := logLimiter{every: 1 << 62}
	if ok, n := l.allow("a"); !ok || n != 0 {
		t.Errorf("first allow(a) = %v, %d; want true, 0", ok, n)
	}
	for range 3 {
		if ok, _ := l.allow("a"); ok {
			t.Error("allow(a) within the interval = true, want false")
		}
	}
	if ok, _ := l.allow("b"); !ok {
		t.Error("allow(b) = false; keys are limited separately")
	}
	l.every = 0
	if ok, n := l.allow("a"); !ok || n != 3 {
		t.Errorf("allow(a) after the interval = %v, %d; want true, 3", ok, n)
	}
}

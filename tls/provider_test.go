package tls

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTLSConfigSNI(t *testing.T) {
	t.Parallel()
	a := validPair(t, "a.example.com")
	b := validPair(t, "b.example.com")
	wild := validPair(t, "*.wild.example.com")
	dir := t.TempDir()
	p := newTestProvider(t, Options{
		Files: []CertFile{a.write(t, dir, "a"), b.write(t, dir, "b")},
		Certs: []tls.Certificate{wild.tlsCert(t)},
	})
	addr := serve(t, p.TLSConfig())
	pool := roots(a, b, wild)

	tests := []struct {
		name string
		sni  string
		// matches means the served certificate must cover sni, so the
		// client verifies the host name too.
		matches bool
		want    string
	}{
		{name: "exact first", sni: "a.example.com", matches: true, want: "a.example.com"},
		{name: "exact second", sni: "b.example.com", matches: true, want: "b.example.com"},
		{name: "case insensitive", sni: "B.Example.COM", matches: true, want: "b.example.com"},
		{name: "wildcard", sni: "x.wild.example.com", matches: true, want: "*.wild.example.com"},
		{name: "wildcard is one label", sni: "x.y.wild.example.com", want: "a.example.com"},
		{name: "wildcard excludes parent", sni: "wild.example.com", want: "a.example.com"},
		{name: "unknown gets default", sni: "unknown.example.org", want: "a.example.com"},
		{name: "empty gets default", sni: "", want: "a.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := &tls.Config{RootCAs: pool, ServerName: tc.sni}
			if !tc.matches {
				cfg = verifyChainOnly(pool, tc.sni)
			}
			c, err := dial(t, addr, cfg)
			if err != nil {
				t.Fatalf("handshake with SNI %q: %v", tc.sni, err)
			}
			if got := servedCN(c); got != tc.want {
				t.Errorf("SNI %q served %q, want %q", tc.sni, got, tc.want)
			}
		})
	}
}

func TestTLSConfigVersionsAndCiphers(t *testing.T) {
	t.Parallel()
	pair := validPair(t, "example.com")
	p := newTestProvider(t, Options{Certs: []tls.Certificate{pair.tlsCert(t)}})
	addr := serve(t, p.TLSConfig())

	tests := []struct {
		name         string
		min, max     uint16
		cipherSuites []uint16
		wantVersion  uint16 // 0 means the handshake must fail
		wantErr      string // the client's error when it does
	}{
		{name: "TLS 1.0 rejected", min: tls.VersionTLS10, max: tls.VersionTLS10, wantErr: "protocol version not supported"},
		{name: "TLS 1.1 rejected", min: tls.VersionTLS10, max: tls.VersionTLS11, wantErr: "protocol version not supported"},
		{name: "TLS 1.2 accepted", min: tls.VersionTLS12, max: tls.VersionTLS12, wantVersion: tls.VersionTLS12},
		{name: "TLS 1.3 accepted", min: tls.VersionTLS13, max: tls.VersionTLS13, wantVersion: tls.VersionTLS13},
		{
			name: "TLS 1.2 CBC only rejected", min: tls.VersionTLS12, max: tls.VersionTLS12,
			cipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
			wantErr:      "handshake failure",
		},
		{
			name: "TLS 1.2 ChaCha20 accepted", min: tls.VersionTLS12, max: tls.VersionTLS12,
			cipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
			wantVersion:  tls.VersionTLS12,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := dial(t, addr, &tls.Config{
				RootCAs:      roots(pair),
				ServerName:   "example.com",
				MinVersion:   tc.min,
				MaxVersion:   tc.max,
				CipherSuites: tc.cipherSuites,
			})
			if tc.wantVersion == 0 {
				if err == nil {
					t.Fatalf("handshake succeeded with %s, want an error", tls.VersionName(c.ConnectionState().Version))
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("handshake error = %q, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := c.ConnectionState().Version; got != tc.wantVersion {
				t.Errorf("version = %s, want %s", tls.VersionName(got), tls.VersionName(tc.wantVersion))
			}
		})
	}
}

func TestTLSConfigALPN(t *testing.T) {
	t.Parallel()
	pair := validPair(t, "example.com")
	p := newTestProvider(t, Options{Certs: []tls.Certificate{pair.tlsCert(t)}})
	addr := serve(t, p.TLSConfig())

	tests := []struct {
		name    string
		protos  []string
		want    string
		wantErr string
	}{
		{name: "h2 and http/1.1", protos: []string{"h2", "http/1.1"}, want: "http/1.1"},
		{name: "http/1.1", protos: []string{"http/1.1"}, want: "http/1.1"},
		{name: "no ALPN", protos: nil, want: ""},
		{name: "h2 only", protos: []string{"h2"}, wantErr: "no application protocol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := dial(t, addr, &tls.Config{RootCAs: roots(pair), ServerName: "example.com", NextProtos: tc.protos})
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("handshake negotiated %q, want an error", c.ConnectionState().NegotiatedProtocol)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("handshake error = %q, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := c.ConnectionState().NegotiatedProtocol; got != tc.want {
				t.Errorf("NegotiatedProtocol = %q, want %q", got, tc.want)
			}
		})
	}
}

// Two certificates for one name: a client that cannot use the first gets
// the second, as with crypto/tls Config.Certificates.
func TestTLSConfigKeyTypeFallback(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ec := validPair(t, "example.com")
	rs := makePair(t, []string{"example.com"}, now.Add(-time.Hour), now.Add(time.Hour*24*90), rsaKey)
	p := newTestProvider(t, Options{Certs: []tls.Certificate{ec.tlsCert(t), rs.tlsCert(t)}})
	addr := serve(t, p.TLSConfig())

	tests := []struct {
		name         string
		cipherSuites []uint16
		want         string
	}{
		{name: "ECDSA preferred", cipherSuites: nil, want: "ECDSA"},
		{name: "RSA-only client", cipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, want: "RSA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := dial(t, addr, &tls.Config{
				RootCAs:      roots(ec, rs),
				ServerName:   "example.com",
				MaxVersion:   tls.VersionTLS12,
				CipherSuites: tc.cipherSuites,
			})
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got := c.ConnectionState().PeerCertificates[0].PublicKeyAlgorithm.String(); got != tc.want {
				t.Errorf("served %s certificate, want %s", got, tc.want)
			}
		})
	}
}

func TestReloadReplacedFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	oldPair := makePair(t, []string{"example.com"}, now.Add(-time.Hour), now.Add(30*24*time.Hour), nil)
	newPair := makePair(t, []string{"example.com"}, now.Add(-time.Hour), now.Add(60*24*time.Hour), nil)
	cf := oldPair.write(t, dir, "site")
	p := newTestProvider(t, Options{Files: []CertFile{cf}})
	addr := serve(t, p.TLSConfig())
	clientConfig := &tls.Config{RootCAs: roots(oldPair, newPair), ServerName: "example.com"}

	established, err := dial(t, addr, clientConfig.Clone())
	if err != nil {
		t.Fatalf("handshake before Reload: %v", err)
	}
	if err := echo(established, "before"); err != nil {
		t.Fatalf("echo before Reload: %v", err)
	}

	newPair.write(t, dir, "site")
	if err := p.Reload(); err != nil {
		t.Fatalf("Reload() = %v, want nil", err)
	}

	fresh, err := dial(t, addr, clientConfig.Clone())
	if err != nil {
		t.Fatalf("handshake after Reload: %v", err)
	}
	if got := fresh.ConnectionState().PeerCertificates[0]; !got.Equal(newPair.leaf) {
		t.Errorf("new handshake served serial %v, want the replaced certificate %v", got.SerialNumber, newPair.leaf.SerialNumber)
	}
	if err := echo(established, "after"); err != nil {
		t.Errorf("echo on connection established before Reload: %v", err)
	}
	if got := established.ConnectionState().PeerCertificates[0]; !got.Equal(oldPair.leaf) {
		t.Errorf("established connection's certificate changed to serial %v", got.SerialNumber)
	}
	if got, want := p.Certificates()[0].NotAfter, newPair.leaf.NotAfter; !got.Equal(want) {
		t.Errorf("Certificates()[0].NotAfter = %v, want %v", got, want)
	}
}

func TestReloadFailureKeepsOld(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		name string
		// breakFiles damages the pair at cf and returns text the error
		// must contain.
		breakFiles func(t *testing.T, cf CertFile) string
		wantIs     error
	}{
		{
			name: "missing cert file",
			breakFiles: func(t *testing.T, cf CertFile) string {
				if err := os.Remove(cf.CertFile); err != nil {
					t.Fatal(err)
				}
				return cf.CertFile
			},
			wantIs: os.ErrNotExist,
		},
		{
			name: "missing key file",
			breakFiles: func(t *testing.T, cf CertFile) string {
				if err := os.Remove(cf.KeyFile); err != nil {
					t.Fatal(err)
				}
				return cf.KeyFile
			},
			wantIs: os.ErrNotExist,
		},
		{
			name: "key mismatch",
			breakFiles: func(t *testing.T, cf CertFile) string {
				writeFile(t, cf.KeyFile, validPair(t, "example.com").keyPEM)
				return cf.CertFile
			},
		},
		{
			name: "garbage certificate",
			breakFiles: func(t *testing.T, cf CertFile) string {
				writeFile(t, cf.CertFile, []byte("not a certificate"))
				return cf.CertFile
			},
		},
		{
			name: "expired",
			breakFiles: func(t *testing.T, cf CertFile) string {
				makePair(t, []string{"example.com"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour), nil).write(t, filepath.Dir(cf.CertFile), "site")
				return cf.CertFile
			},
			wantIs: ErrExpired,
		},
		{
			name: "not yet valid",
			breakFiles: func(t *testing.T, cf CertFile) string {
				makePair(t, []string{"example.com"}, now.Add(24*time.Hour), now.Add(48*time.Hour), nil).write(t, filepath.Dir(cf.CertFile), "site")
				return cf.CertFile
			},
			wantIs: ErrNotYetValid,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			pair := validPair(t, "example.com")
			cf := pair.write(t, dir, "site")
			// A good second file must not be published on its own.
			other := validPair(t, "other.example.com").write(t, dir, "other")
			p := newTestProvider(t, Options{Files: []CertFile{cf, other}})
			addr := serve(t, p.TLSConfig())
			before := p.Certificates()

			wantInErr := tc.breakFiles(t, cf)
			err := p.Reload()
			if err == nil {
				t.Fatal("Reload() = nil, want an error")
			}
			if !strings.Contains(err.Error(), wantInErr) {
				t.Errorf("Reload() = %q, want it to name %s", err, wantInErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Reload() = %q, want errors.Is(err, %v)", err, tc.wantIs)
			}

			if got := p.Certificates(); !slices.EqualFunc(got, before, certInfoEqual) {
				t.Errorf("Certificates() after failed Reload = %+v, want %+v", got, before)
			}
			c, err := dial(t, addr, &tls.Config{RootCAs: roots(pair), ServerName: "example.com"})
			if err != nil {
				t.Fatalf("handshake after failed Reload: %v", err)
			}
			if got := c.ConnectionState().PeerCertificates[0]; !got.Equal(pair.leaf) {
				t.Errorf("served serial %v after failed Reload, want the old %v", got.SerialNumber, pair.leaf.SerialNumber)
			}
		})
	}
}

// Handshakes racing with Reload always get one complete certificate set.
func TestReloadConcurrentHandshakes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := validPair(t, "example.com")
	second := validPair(t, "example.com")
	cf := first.write(t, dir, "site")
	p := newTestProvider(t, Options{Files: []CertFile{cf}})
	addr := serve(t, p.TLSConfig())
	clientConfig := &tls.Config{RootCAs: roots(first, second), ServerName: "example.com"}

	const clients, handshakes = 4, 5
	errs := make(chan error, clients*handshakes)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range handshakes {
				c, err := dial(t, addr, clientConfig.Clone())
				if err != nil {
					errs <- err
					continue
				}
				errs <- echo(c, "x")
			}
		})
	}
	for i := range 10 {
		pair := first
		if i%2 == 0 {
			pair = second
		}
		pair.write(t, dir, "site")
		if err := p.Reload(); err != nil {
			t.Errorf("Reload() = %v", err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("handshake during Reload: %v", err)
		}
	}
}

func TestNewProviderErrors(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		name string
		// opts builds the options in dir and returns them with the texts
		// the error must contain.
		opts   func(t *testing.T, dir string) (Options, []string)
		wantIs error
	}{
		{
			name:   "no certificates",
			opts:   func(t *testing.T, dir string) (Options, []string) { return Options{}, nil },
			wantIs: ErrNoCertificates,
		},
		{
			name: "missing cert file",
			opts: func(t *testing.T, dir string) (Options, []string) {
				cf := validPair(t, "example.com").write(t, dir, "site")
				cf.CertFile = filepath.Join(dir, "missing.crt")
				return Options{Files: []CertFile{cf}}, []string{cf.CertFile}
			},
			wantIs: os.ErrNotExist,
		},
		{
			name: "missing key file",
			opts: func(t *testing.T, dir string) (Options, []string) {
				cf := validPair(t, "example.com").write(t, dir, "site")
				cf.KeyFile = filepath.Join(dir, "missing.key")
				return Options{Files: []CertFile{cf}}, []string{cf.KeyFile}
			},
			wantIs: os.ErrNotExist,
		},
		{
			name: "cert path is a directory",
			opts: func(t *testing.T, dir string) (Options, []string) {
				cf := validPair(t, "example.com").write(t, dir, "site")
				cf.CertFile = dir
				return Options{Files: []CertFile{cf}}, []string{dir + ": not a regular file"}
			},
		},
		{
			name: "empty paths",
			opts: func(t *testing.T, dir string) (Options, []string) {
				return Options{Files: []CertFile{{CertFile: "only.crt"}}}, []string{"only.crt"}
			},
		},
		{
			name: "key mismatch",
			opts: func(t *testing.T, dir string) (Options, []string) {
				cf := validPair(t, "example.com").write(t, dir, "site")
				writeFile(t, cf.KeyFile, validPair(t, "example.com").keyPEM)
				return Options{Files: []CertFile{cf}}, []string{cf.CertFile}
			},
		},
		{
			name: "expired",
			opts: func(t *testing.T, dir string) (Options, []string) {
				cf := makePair(t, []string{"example.com"}, now.Add(-48*time.Hour), now.Add(-time.Hour), nil).write(t, dir, "site")
				return Options{Files: []CertFile{cf}}, []string{cf.CertFile}
			},
			wantIs: ErrExpired,
		},
		{
			name: "not yet valid",
			opts: func(t *testing.T, dir string) (Options, []string) {
				cf := makePair(t, []string{"example.com"}, now.Add(time.Hour), now.Add(48*time.Hour), nil).write(t, dir, "site")
				return Options{Files: []CertFile{cf}}, []string{cf.CertFile}
			},
			wantIs: ErrNotYetValid,
		},
		{
			name: "every broken file is named",
			opts: func(t *testing.T, dir string) (Options, []string) {
				good := validPair(t, "good.example.com").write(t, dir, "good")
				bad1 := CertFile{CertFile: filepath.Join(dir, "bad1.crt"), KeyFile: filepath.Join(dir, "bad1.key")}
				bad2 := makePair(t, []string{"old.example.com"}, now.Add(-48*time.Hour), now.Add(-time.Hour), nil).write(t, dir, "bad2")
				return Options{Files: []CertFile{good, bad1, bad2}}, []string{bad1.CertFile, bad2.CertFile}
			},
			wantIs: ErrExpired,
		},
		{
			name: "expired in-memory certificate",
			opts: func(t *testing.T, dir string) (Options, []string) {
				c := makePair(t, []string{"example.com"}, now.Add(-48*time.Hour), now.Add(-time.Hour), nil).tlsCert(t)
				return Options{Certs: []tls.Certificate{c}}, []string{"Certs[0]"}
			},
			wantIs: ErrExpired,
		},
		{
			name: "in-memory key mismatch",
			opts: func(t *testing.T, dir string) (Options, []string) {
				c := validPair(t, "example.com").tlsCert(t)
				c.PrivateKey = validPair(t, "example.com").tlsCert(t).PrivateKey
				ok := validPair(t, "ok.example.com").tlsCert(t)
				return Options{Certs: []tls.Certificate{ok, c}}, []string{"Certs[1]", "does not match"}
			},
		},
		{
			name: "in-memory empty chain",
			opts: func(t *testing.T, dir string) (Options, []string) {
				return Options{Certs: []tls.Certificate{{}}}, []string{"Certs[0]"}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts, wantInErr := tc.opts(t, t.TempDir())
			opts.Logger = discardLogger()
			p, err := NewProvider(opts)
			if err == nil {
				t.Fatalf("NewProvider() = %v, nil; want an error", p)
			}
			for _, s := range wantInErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("NewProvider() error = %q, want it to contain %q", err, s)
				}
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("NewProvider() error = %q, want errors.Is(err, %v)", err, tc.wantIs)
			}
		})
	}
}

func TestCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := validPair(t, "a.example.com", "*.a.example.com")
	mem := validPair(t, "localhost", "127.0.0.1", "::1")
	cf := file.write(t, dir, "a")
	certs := []tls.Certificate{mem.tlsCert(t)}
	p := newTestProvider(t, Options{Files: []CertFile{cf}, Certs: certs})

	want := []CertInfo{
		{Source: cf.CertFile, Names: []string{"a.example.com", "*.a.example.com"}, NotBefore: file.leaf.NotBefore, NotAfter: file.leaf.NotAfter},
		{Source: "Certs[0]", Names: []string{"localhost", "127.0.0.1", "::1"}, NotBefore: mem.leaf.NotBefore, NotAfter: mem.leaf.NotAfter},
	}
	got := p.Certificates()
	if !slices.EqualFunc(got, want, certInfoEqual) {
		t.Errorf("Certificates() = %+v, want %+v", got, want)
	}
	got[0].Names[0] = "changed"
	if again := p.Certificates(); again[0].Names[0] != "a.example.com" {
		t.Errorf("Certificates() shares its Names: after editing a result, got %q", again[0].Names[0])
	}
	if certs[0].Leaf != nil {
		t.Error("NewProvider set Leaf on the caller's Options.Certs")
	}
}

// Each handshake gets its own *tls.Certificate, and appending to its chain
// does not change what later handshakes get.
func TestGetCertificateReturnsCopy(t *testing.T) {
	t.Parallel()
	pair := validPair(t, "example.com")
	p := newTestProvider(t, Options{Certs: []tls.Certificate{pair.tlsCert(t)}})
	getCert := p.TLSConfig().GetCertificate
	hello := &tls.ClientHelloInfo{ServerName: "example.com"}

	c1, err := getCert(hello)
	if err != nil {
		t.Fatal(err)
	}
	c1.Certificate = append(c1.Certificate, []byte("extra"))
	c2, err := getCert(hello)
	if err != nil {
		t.Fatal(err)
	}
	if c1 == c2 {
		t.Error("GetCertificate returned the same pointer twice")
	}
	if got := len(c2.Certificate); got != 1 {
		t.Errorf("len(Certificate) after another caller appended = %d, want 1", got)
	}
	if c2.Leaf == nil {
		t.Error("GetCertificate returned a certificate without Leaf")
	}
}

func TestLoadLogging(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		name     string
		notAfter time.Time
		wantWarn bool
	}{
		{name: "expires in 7 days", notAfter: now.Add(7 * 24 * time.Hour), wantWarn: true},
		{name: "expires in 90 days", notAfter: now.Add(90 * 24 * time.Hour), wantWarn: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&buf, nil))
			pair := makePair(t, []string{"example.com"}, now.Add(-time.Hour), tc.notAfter, nil)
			newTestProvider(t, Options{Certs: []tls.Certificate{pair.tlsCert(t)}, Logger: logger})

			var loaded, warned int
			for line := range strings.Lines(buf.String()) {
				var rec struct {
					Level, Msg string
					Source     string   `json:"source"`
					Names      []string `json:"names"`
					NotAfter   string   `json:"not_after"`
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if rec.Source != "Certs[0]" || !slices.Equal(rec.Names, []string{"example.com"}) || rec.NotAfter == "" {
					t.Errorf("log line %q lacks source, names or not_after", line)
				}
				switch key := fmt.Sprint(rec.Level, " ", rec.Msg); key {
				case "INFO certificate loaded":
					loaded++
				case "WARN certificate expires soon":
					warned++
				default:
					t.Errorf("unexpected log line %q", line)
				}
			}
			if loaded != 1 {
				t.Errorf("%d \"certificate loaded\" lines, want 1", loaded)
			}
			if got := warned == 1; got != tc.wantWarn {
				t.Errorf("%d \"certificate expires soon\" lines, want warning %v", warned, tc.wantWarn)
			}
		})
	}
}

func certInfoEqual(a, b CertInfo) bool {
	return a.Source == b.Source && slices.Equal(a.Names, b.Names) &&
		a.NotBefore.Equal(b.NotBefore) && a.NotAfter.Equal(b.NotAfter)
}

func TestSetFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a, b := validPair(t, "a.example.com"), validPair(t, "b.example.com")
	cfA, cfB := a.write(t, dir, "a"), b.write(t, dir, "b")
	p := newTestProvider(t, Options{Files: []CertFile{cfA}})
	addr := serve(t, p.TLSConfig())

	serves := func(name string, want testPair) {
		t.Helper()
		// Compared by hand below, so no verification: the default certificate
		// need not be valid for name.
		conn, err := dial(t, addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("handshake for %s: %v", name, err)
		}
		if got := conn.ConnectionState().PeerCertificates[0]; !got.Equal(want.leaf) {
			t.Errorf("SNI %s served serial %v, want %v", name, got.SerialNumber, want.leaf.SerialNumber)
		}
	}

	if err := p.SetFiles([]CertFile{cfB}); err != nil {
		t.Fatalf("SetFiles(b) = %v", err)
	}
	serves("b.example.com", b)
	// A list with a broken pair changes nothing, and Reload keeps using
	// the last good list.
	broken := CertFile{CertFile: cfA.CertFile, KeyFile: filepath.Join(dir, "missing.pem")}
	if err := p.SetFiles([]CertFile{cfA, broken}); err == nil {
		t.Fatal("SetFiles(with a missing key) = nil, want an error")
	}
	serves("a.example.com", b) // default: still b
	if err := p.Reload(); err != nil {
		t.Fatalf("Reload() after a failed SetFiles = %v", err)
	}
	serves("b.example.com", b)
	if err := p.SetFiles(nil); !errors.Is(err, ErrNoCertificates) {
		t.Errorf("SetFiles(nil) = %v, want ErrNoCertificates", err)
	}
}

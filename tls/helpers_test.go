package tls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testPair is a generated certificate and key.
type testPair struct {
	certPEM, keyPEM []byte
	leaf            *x509.Certificate
}

// makePair generates a self-signed certificate for hosts with the given
// validity window and key (nil means a new ECDSA P-256 key).
func makePair(t testing.TB, hosts []string, notBefore, notAfter time.Time, key crypto.Signer) testPair {
	t.Helper()
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	certPEM, keyPEM, err := generateSelfSigned(hosts, key, notBefore, notAfter)
	if err != nil {
		t.Fatalf("generateSelfSigned(%v) error: %v", hosts, err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return testPair{certPEM: certPEM, keyPEM: keyPEM, leaf: leaf}
}

// validPair is a pair valid from an hour ago for 90 days.
func validPair(t testing.TB, hosts ...string) testPair {
	t.Helper()
	now := time.Now()
	return makePair(t, hosts, now.Add(-time.Hour), now.Add(90*24*time.Hour), nil)
}

// write stores the pair as name.crt and name.key in dir.
func (tp testPair) write(t testing.TB, dir, name string) CertFile {
	t.Helper()
	cf := CertFile{
		CertFile: filepath.Join(dir, name+".crt"),
		KeyFile:  filepath.Join(dir, name+".key"),
	}
	writeFile(t, cf.CertFile, tp.certPEM)
	writeFile(t, cf.KeyFile, tp.keyPEM)
	return cf
}

// tlsCert returns the pair as an in-memory certificate without a Leaf.
func (tp testPair) tlsCert(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(tp.certPEM, tp.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c.Leaf = nil
	return c
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// serverConfig is a bare server config serving tp.
func (tp testPair) serverConfig(t testing.TB) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{tp.tlsCert(t)}}
}

func newTestProvider(t testing.TB, opts Options) *Provider {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	p, err := NewProvider(opts)
	if err != nil {
		t.Fatalf("NewProvider() error: %v", err)
	}
	return p
}

// roots returns a pool that trusts the given self-signed pairs.
func roots(pairs ...testPair) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, tp := range pairs {
		pool.AddCert(tp.leaf)
	}
	return pool
}

// serve runs a TLS echo server on 127.0.0.1 with cfg and returns its
// address. Every connection handshakes and then echoes until closed. The
// listener and all connections are closed, and their goroutines waited
// for, when the test ends.
func serve(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = tls.NewListener(ln, cfg)

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  = make(map[net.Conn]struct{})
		closed bool
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return // rejected handshakes are part of the tests
				}
				_, _ = io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dial connects to addr and completes the handshake with cfg. The
// connection is closed when the test ends.
func dial(t testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c.(*tls.Conn), nil
}

// verifyChainOnly returns a client config that checks the server's chain
// against pool but not its host name, for cases where the server is
// expected to answer with a certificate that does not cover serverName.
func verifyChainOnly(pool *x509.CertPool, serverName string) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // the chain is checked in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no peer certificate")
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool})
			return err
		},
	}
}

// echo writes msg on c and reads it back.
func echo(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch: " + string(buf))
	}
	return nil
}

// servedCN returns the common name of the certificate the server presented.
func servedCN(c *tls.Conn) string {
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

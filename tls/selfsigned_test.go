package tls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"slices"
	"testing"
	"time"
)

func TestGenerateSelfSigned(t *testing.T) {
	t.Parallel()
	hosts := []string{"localhost", "127.0.0.1", "demo.example.com", "::1"}
	const validFor = 24 * time.Hour
	start := time.Now()
	certPEM, keyPEM, err := GenerateSelfSigned(hosts, validFor)
	if err != nil {
		t.Fatalf("GenerateSelfSigned() error: %v", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair(generated) error: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}

	if got, want := leaf.DNSNames, []string{"localhost", "demo.example.com"}; !slices.Equal(got, want) {
		t.Errorf("DNSNames = %v, want %v", got, want)
	}
	wantIPs := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	if got := leaf.IPAddresses; !slices.EqualFunc(got, wantIPs, net.IP.Equal) {
		t.Errorf("IPAddresses = %v, want %v", got, wantIPs)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key = %T, want ECDSA P-256", leaf.PublicKey)
	}
	if leaf.NotBefore.After(start) {
		t.Errorf("NotBefore = %v, want at or before %v", leaf.NotBefore, start)
	}
	if got, want := leaf.NotAfter, start.Add(validFor); got.Before(want.Add(-time.Minute)) || got.After(want.Add(time.Minute)) {
		t.Errorf("NotAfter = %v, want about %v", got, want)
	}
	if leaf.IsCA {
		t.Error("IsCA = true, want a leaf certificate")
	}

	// A client that trusts the certificate can connect by IP address, as
	// `wsgate demo` users do.
	p := newTestProvider(t, Options{Certs: []tls.Certificate{pair}})
	addr := serve(t, p.TLSConfig())
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, serverName := range []string{"127.0.0.1", "localhost"} {
		if _, err := dial(t, addr, &tls.Config{RootCAs: pool, ServerName: serverName}); err != nil {
			t.Errorf("handshake as %q: %v", serverName, err)
		}
	}
}

func TestGenerateSelfSignedErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		hosts    []string
		validFor time.Duration
	}{
		{name: "no hosts", hosts: nil, validFor: time.Hour},
		{name: "empty host", hosts: []string{"localhost", ""}, validFor: time.Hour},
		{name: "zero validity", hosts: []string{"localhost"}, validFor: 0},
		{name: "negative validity", hosts: []string{"localhost"}, validFor: -time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			certPEM, keyPEM, err := GenerateSelfSigned(tc.hosts, tc.validFor)
			if err == nil {
				t.Errorf("GenerateSelfSigned(%q, %v) = %d, %d bytes, nil; want an error", tc.hosts, tc.validFor, len(certPEM), len(keyPEM))
			}
		})
	}
}

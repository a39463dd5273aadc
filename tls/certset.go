package tls

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// certEntry is one served certificate. It is immutable once built: it is
// shared between certificate sets and read by concurrent handshakes.
type certEntry struct {
	cert   *tls.Certificate // Leaf is always set
	source string           // file path or "Certs[i]"
	names  []string         // DNS and IP SANs, as written in the certificate
}

func (e *certEntry) info() CertInfo {
	return CertInfo{
		Source:    e.source,
		Names:     append([]string(nil), e.names...),
		NotBefore: e.cert.Leaf.NotBefore,
		NotAfter:  e.cert.Leaf.NotAfter,
	}
}

// certSet is an immutable snapshot of the served certificates with their SNI
// indexes. A Provider publishes it through an atomic pointer and replaces it
// as a whole on Reload.
type certSet struct {
	entries []*certEntry // in Options order; entries[0] is the default

	// exact maps a lower-case DNS SAN without trailing dot to the entries
	// that carry it, in Options order.
	exact map[string][]*certEntry
	// wildcard maps the parent domain of a "*.parent" SAN ("example.com"
	// for "*.example.com") to the entries that carry it.
	wildcard map[string][]*certEntry
}

func newCertSet(entries []*certEntry) *certSet {
	s := &certSet{
		entries:  entries,
		exact:    make(map[string][]*certEntry),
		wildcard: make(map[string][]*certEntry),
	}
	for _, e := range entries {
		for _, san := range e.cert.Leaf.DNSNames {
			name := normalizeName(san)
			m := s.exact
			if parent, ok := strings.CutPrefix(name, "*."); ok {
				m, name = s.wildcard, parent
			}
			if name == "" || strings.Contains(name, "*") {
				continue // not a name SNI can match
			}
			if c := m[name]; len(c) > 0 && c[len(c)-1] == e {
				continue // the same SAN twice in one certificate
			}
			m[name] = append(m[name], e)
		}
	}
	return s
}

// lookup returns the entry to serve for hello: an exact DNS SAN match, then
// a one-label wildcard match, then the default. It never returns nil; the
// set must not be empty.
func (s *certSet) lookup(hello *tls.ClientHelloInfo) *certEntry {
	if e := s.match(hello); e != nil {
		return e
	}
	return s.entries[0]
}

// match returns the entry whose names match hello's server name, exactly
// or by a one-label wildcard, or nil.
func (s *certSet) match(hello *tls.ClientHelloInfo) *certEntry {
	name := normalizeName(hello.ServerName)
	if name == "" {
		return nil
	}
	if c := s.exact[name]; len(c) > 0 {
		return pick(hello, c)
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c := s.wildcard[name[i+1:]]; len(c) > 0 {
			return pick(hello, c)
		}
	}
	return nil
}

// pick chooses among certificates for the same name (say an ECDSA and an
// RSA one) the first the client supports, as crypto/tls does for
// Config.Certificates, and falls back to the first.
func pick(hello *tls.ClientHelloInfo, candidates []*certEntry) *certEntry {
	if len(candidates) > 1 {
		for _, e := range candidates {
			if hello.SupportsCertificate(e.cert) == nil {
				return e
			}
		}
	}
	return candidates[0]
}

// normalizeName lower-cases a host name and drops one trailing dot, so that
// "Example.COM." and "example.com" are the same name.
func normalizeName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// loadFile reads and checks one PEM pair. Errors name both files.
func loadFile(f CertFile, now time.Time) (*certEntry, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, fmt.Errorf("load certificate %q (key %q): both paths must be set", f.CertFile, f.KeyFile)
	}
	certPEM, err := ReadPEM(f.CertFile)
	keyPEM, kerr := ReadPEM(f.KeyFile)
	if err := errors.Join(err, kerr); err != nil {
		return nil, fmt.Errorf("load certificate %s (key %s): %w", f.CertFile, f.KeyFile, err)
	}
	e, err := parseKeyPair(certPEM, keyPEM, f.CertFile, now)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s (key %s): %w", f.CertFile, f.KeyFile, err)
	}
	return e, nil
}

// newCertEntry checks c and parses its leaf once, so handshakes never parse.
// c is a copy; the caller's Certificate is not modified.
func newCertEntry(c tls.Certificate, source string, now time.Time) (*certEntry, error) {
	if len(c.Certificate) == 0 {
		return nil, errors.New("no certificate in chain")
	}
	if c.Leaf == nil {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("parse leaf certificate: %w", err)
		}
		c.Leaf = leaf
	}
	if err := checkKey(c); err != nil {
		return nil, err
	}
	leaf := c.Leaf
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%w: not before %s", ErrNotYetValid, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: not after %s", ErrExpired, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	names := make([]string, 0, len(leaf.DNSNames)+len(leaf.IPAddresses))
	names = append(names, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	c.Certificate = c.Certificate[:len(c.Certificate):len(c.Certificate)]
	return &certEntry{cert: &c, source: source, names: names}, nil
}

// checkKey reports whether c's private key belongs to its leaf. Pairs from
// PEM files were already checked by crypto/tls; in-memory pairs may have been
// assembled by hand.
func checkKey(c tls.Certificate) error {
	signer, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return errors.New("private key missing or not a crypto.Signer")
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(c.Leaf.PublicKey) {
		return errors.New("private key does not match certificate")
	}
	return nil
}

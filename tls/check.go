package tls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"time"
)

// The rules certificate options must follow, as NewProvider, Reload and
// SetFiles apply them. They are exported so that a configuration check can
// report each where its value was written: ReadPEM for every file,
// CheckKeyPair for a certificate and its key, LoadCAFile for
// ACMEOptions.DirectoryCAFile, CheckACMEDomain for ACMEOptions.Domains.

// MaxPEMSize bounds the size of a certificate, key or CA file.
const MaxPEMSize = 1 << 20

// ErrNoCACertificate means a CA file holds no PEM certificate.
var ErrNoCACertificate = errors.New("tls: no PEM certificate in CA file")

// ReadPEM reads a certificate, key or CA file, which must be a regular file
// of at most MaxPEMSize bytes (so that a path such as /dev/zero or a FIFO
// cannot hang a load). Errors are *fs.PathError.
func ReadPEM(name string) ([]byte, error) {
	fi, err := os.Stat(name)
	switch {
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular():
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("not a regular file")}
	case fi.Size() > MaxPEMSize:
		return nil, &fs.PathError{Op: "read", Path: name, Err: fmt.Errorf("larger than %d bytes", MaxPEMSize)}
	}
	return os.ReadFile(name)
}

// CheckKeyPair reports whether a PEM certificate chain (leaf first) and a
// PEM private key, as read from a CertFile's files, form a pair that can be
// served at now: the key must belong to the leaf (crypto/tls's error
// otherwise), and the leaf must be valid (an error wrapping ErrNotYetValid
// or ErrExpired otherwise).
func CheckKeyPair(certPEM, keyPEM []byte, now time.Time) error {
	_, err := parseKeyPair(certPEM, keyPEM, "", now)
	return err
}

// parseKeyPair is CheckKeyPair returning the entry for source.
func parseKeyPair(certPEM, keyPEM []byte, source string, now time.Time) (*certEntry, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return newCertEntry(c, source, now)
}

// LoadCAFile reads a PEM bundle of CA certificates: a file ReadPEM
// accepts, with at least one certificate (ErrNoCACertificate otherwise).
func LoadCAFile(name string) (*x509.CertPool, error) {
	data, err := ReadPEM(name)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%w %s", ErrNoCACertificate, name)
	}
	return pool, nil
}

// CheckACMEDomain says why name cannot be one of ACMEOptions.Domains, or
// returns nil: it must be a DNS name of at least two labels, without
// scheme, port, path or wildcard. The syntax of the labels themselves is
// left to the CA.
func CheckACMEDomain(name string) error {
	const hint = "; write a bare DNS name such as ws.example.com"
	var problem string
	switch {
	case name == "":
		problem = "the name is empty" + hint
	case strings.Contains(name, "://"):
		problem = "it has a scheme" + hint
	case strings.Contains(name, "/"):
		problem = "it contains a slash" + hint
	case strings.Contains(name, "*"):
		problem = "wildcard certificates need the DNS-01 challenge, which wsgate's ACME client (autocert) cannot do; list each name, or serve the wildcard from a static certificate in tls.certificates"
	case net.ParseIP(strings.Trim(name, "[]")) != nil:
		problem = "an IP address; ACME certificates are obtained for DNS names only (use a static certificate for an IP address)"
	case strings.Contains(name, ":"):
		problem = "it has a port; the CA validates the name on ports 80 and 443" + hint
	case !strings.Contains(strings.TrimSuffix(name, "."), "."):
		problem = "a single-label name; certificates are issued for names with at least two labels, such as ws.example.com"
	default:
		return nil
	}
	return errors.New(problem)
}

// Command gencert writes the one self-signed ECDSA P-256 certificate that
// bench/compare.sh gives every proxy under test, so that all of them do the
// same TLS work per handshake.
//
// Usage:
//
//	go run ./bench/gencert -dir DIR [-hosts 127.0.0.1,localhost] [-valid 8760h]
//
// It writes DIR/cert.pem, DIR/key.pem (PKCS #8) and DIR/combined.pem (the
// certificate followed by the key, the form HAProxy's "crt" wants).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	wstls "github.com/wsgate/wsgate/tls"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gencert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "output `directory` (required; created if missing)")
	hosts := fs.String("hosts", "127.0.0.1,localhost", "comma-separated IP addresses and DNS names for the certificate")
	valid := fs.Duration("valid", 365*24*time.Hour, "validity from now")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: gencert -dir DIR [-hosts 127.0.0.1,localhost] [-valid 8760h]")
		return 2
	}
	if err := write(*dir, strings.Split(*hosts, ","), *valid); err != nil {
		fmt.Fprintf(stderr, "gencert: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "gencert: wrote %s\n", filepath.Join(*dir, "{cert,key,combined}.pem"))
	return 0
}

func write(dir string, hosts []string, valid time.Duration) error {
	certPEM, keyPEM, err := wstls.GenerateSelfSigned(hosts, valid)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{"cert.pem", certPEM, 0o644},
		{"key.pem", keyPEM, 0o600},
		{"combined.pem", append(append([]byte{}, certPEM...), keyPEM...), 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

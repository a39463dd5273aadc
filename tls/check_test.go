package tls

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadPEM(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pem")
	writeFile(t, good, validPair(t, "example.com").certPEM)
	big := filepath.Join(dir, "big.pem")
	writeFile(t, big, make([]byte, MaxPEMSize+1))
	tests := []struct {
		name, path string
		wantIs     error  // nil: no error
		want       string // in the error
	}{
		{name: "regular file", path: good},
		{name: "missing", path: filepath.Join(dir, "missing.pem"), wantIs: fs.ErrNotExist, want: "missing.pem"},
		{name: "directory", path: dir, want: "not a regular file"},
		{name: "device", path: os.DevNull, want: "not a regular file"},
		{name: "too large", path: big, want: "larger than 1048576 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := ReadPEM(tc.path)
			if tc.want == "" {
				if err != nil || len(data) == 0 {
					t.Fatalf("ReadPEM(%q) = %d bytes, %v; want the file", tc.path, len(data), err)
				}
				return
			}
			var pe *fs.PathError
			if !errors.As(err, &pe) || pe.Path != tc.path {
				t.Fatalf("ReadPEM(%q) error = %#v, want an *fs.PathError for the path", tc.path, err)
			}
			if !strings.Contains(err.Error(), tc.want) || (tc.wantIs != nil && !errors.Is(err, tc.wantIs)) {
				t.Errorf("ReadPEM(%q) error = %v, want %q (Is %v)", tc.path, err, tc.want, tc.wantIs)
			}
		})
	}
}

func TestCheckKeyPair(t *testing.T) {
	now := time.Now()
	good := validPair(t, "example.com")
	expired := makePair(t, []string{"example.com"}, now.Add(-48*time.Hour), now.Add(-time.Hour), nil)
	future := makePair(t, []string{"example.com"}, now.Add(time.Hour), now.Add(48*time.Hour), nil)
	tests := []struct {
		name            string
		certPEM, keyPEM []byte
		wantErr         bool
		wantIs          error
	}{
		{name: "pair", certPEM: good.certPEM, keyPEM: good.keyPEM},
		{name: "another key", certPEM: good.certPEM, keyPEM: validPair(t, "example.com").keyPEM, wantErr: true},
		{name: "switched", certPEM: good.keyPEM, keyPEM: good.certPEM, wantErr: true},
		{name: "expired", certPEM: expired.certPEM, keyPEM: expired.keyPEM, wantErr: true, wantIs: ErrExpired},
		{name: "not yet valid", certPEM: future.certPEM, keyPEM: future.keyPEM, wantErr: true, wantIs: ErrNotYetValid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckKeyPair(tc.certPEM, tc.keyPEM, now)
			if (err != nil) != tc.wantErr {
				t.Fatalf("CheckKeyPair() = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("CheckKeyPair() = %v, want errors.Is %v", err, tc.wantIs)
			}
		})
	}
}

func TestLoadCAFile(t *testing.T) {
	dir := t.TempDir()
	p := validPair(t, "ca.example.com")
	ca, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "key.pem")
	writeFile(t, ca, p.certPEM)
	writeFile(t, key, p.keyPEM)
	if pool, err := LoadCAFile(ca); err != nil || pool == nil {
		t.Errorf("LoadCAFile(certificate) = %v, %v; want a pool", pool, err)
	}
	if _, err := LoadCAFile(key); !errors.Is(err, ErrNoCACertificate) || !strings.Contains(err.Error(), key) {
		t.Errorf("LoadCAFile(key) error = %v, want ErrNoCACertificate naming the file", err)
	}
	if _, err := LoadCAFile(filepath.Join(dir, "missing.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadCAFile(missing) error = %v, want fs.ErrNotExist", err)
	}
}

func TestCheckACMEDomain(t *testing.T) {
	tests := []struct {
		name string
		want string // "" for valid
	}{
		{"ws.example.com", ""},
		{"WS.Example.com.", ""},
		{"", "the name is empty"},
		{"https://ws.example.com", "it has a scheme"},
		{"ws.example.com/x", "it contains a slash"},
		{"*.example.com", "wildcard certificates need the DNS-01 challenge"},
		{"192.0.2.1", "an IP address"},
		{"[::1]", "an IP address"},
		{"ws.example.com:443", "it has a port"},
		{"localhost", "a single-label name"},
		{"localhost.", "a single-label name"},
	}
	for _, tc := range tests {
		err := CheckACMEDomain(tc.name)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckACMEDomain(%q) = %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("CheckACMEDomain(%q) = %v, want %q", tc.name, err, tc.want)
		}
	}
}

package tls

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer collects log output from another goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestWatchReloadsChangedFiles(t *testing.T) {
	dir := t.TempDir()
	first, second := validPair(t, "example.com"), validPair(t, "example.com")
	cf := first.write(t, dir, "site")
	logs := &lockedBuffer{}
	p, err := NewProvider(Options{Files: []CertFile{cf}, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, p.TLSConfig())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Watch(ctx, 10*time.Millisecond) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch() = %v", err)
		}
	}()

	servedIs := func(want testPair) bool {
		conn, err := dial(t, addr, &tls.Config{ServerName: "example.com", InsecureSkipVerify: true})
		if err != nil {
			return false
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Equal(want.leaf)
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, logs.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// A renewal replaces the files: new handshakes get the new pair.
	second.write(t, dir, "site")
	waitUntil("the renewed certificate to be served", func() bool { return servedIs(second) })

	// A broken key (say, half written) is rejected and the last good pair
	// stays.
	if err := os.WriteFile(cf.KeyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitUntil("the rejection to be logged", func() bool { return strings.Contains(logs.String(), "certificate reload rejected") })
	if !servedIs(second) {
		t.Error("a broken key file replaced the served certificate")
	}

	// A Kubernetes-style update: the files are symlinks swapped to a new
	// directory.
	third := validPair(t, "example.com")
	if err := os.Mkdir(filepath.Join(dir, "v3"), 0o700); err != nil {
		t.Fatal(err)
	}
	third.write(t, filepath.Join(dir, "v3"), "site")
	for _, name := range []string{filepath.Base(cf.CertFile), filepath.Base(cf.KeyFile)} {
		link := filepath.Join(dir, name)
		tmp := link + ".tmp"
		if err := os.Symlink(filepath.Join(dir, "v3", name), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, link); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil("the symlinked certificate to be served", func() bool { return servedIs(third) })
}

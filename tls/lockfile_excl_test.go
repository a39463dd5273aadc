//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly) || wsgate_portable

package tls

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The O_EXCL lock: a file left by a crashed holder is taken over once
// stale, a live holder keeps its file fresh, and unlock removes it.
func TestExclLockStaleness(t *testing.T) {
	const stale, beat = 300 * time.Millisecond, 50 * time.Millisecond
	path := filepath.Join(t.TempDir(), "name+lock")

	// A crashed holder's file, fresh: busy; old: taken over.
	if err := os.WriteFile(path, []byte("pid 1 on elsewhere\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := tryLockExcl(path, stale, beat); err != nil || ok {
		t.Fatalf("tryLockExcl() on a fresh file = %v, %v; want busy", ok, err)
	}
	old := time.Now().Add(-2 * stale)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	unlock, ok, err := tryLockExcl(path, stale, beat)
	if err != nil || !ok {
		t.Fatalf("tryLockExcl() on a stale file = %v, %v; want the lock", ok, err)
	}
	data, err := os.ReadFile(path)
	if err != nil || !strings.HasPrefix(string(data), "pid ") || strings.Contains(string(data), "elsewhere") {
		t.Errorf("lock file holds %q, %v; want this process's pid", data, err)
	}

	// Held for longer than stale: the heartbeat keeps it fresh.
	deadline := time.Now().Add(2 * stale)
	for time.Now().Before(deadline) {
		if _, ok, err := tryLockExcl(path, stale, beat); err != nil || ok {
			t.Fatalf("tryLockExcl() while a live holder has it = %v, %v; want busy", ok, err)
		}
		time.Sleep(beat)
	}
	unlock()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("lock file after unlock: %v, want it removed", err)
	}
}

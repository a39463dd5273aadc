package tls

import (
	"path/filepath"
	"testing"
)

// Either lock file, flock(2) or O_EXCL: one holder at a time, and the next
// gets it once the holder lets go.
func TestTryLockExcludes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "name+lock")
	unlock, ok, err := tryLock(path)
	if err != nil || !ok {
		t.Fatalf("first tryLock() = %v, %v; want the lock", ok, err)
	}
	if u, ok, err := tryLock(path); err != nil || ok {
		if ok {
			u()
		}
		t.Fatalf("second tryLock() while held = %v, %v; want busy", ok, err)
	}
	unlock()
	unlock2, ok, err := tryLock(path)
	if err != nil || !ok {
		t.Fatalf("tryLock() after unlock = %v, %v; want the lock", ok, err)
	}
	unlock2()

	if _, _, err := tryLock(filepath.Join(t.TempDir(), "missing", "name+lock")); err == nil {
		t.Error("tryLock() in a missing directory: no error")
	}
}

//go:build (linux || darwin || freebsd || netbsd || openbsd || dragonfly) && !wsgate_portable

package tls

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lockHolderEnv makes the test binary a process that takes the lock file
// named by it, says so and waits to be killed (TestLockHolderProcess).
const lockHolderEnv = "WSGATE_TEST_LOCK_HOLDER"

func TestLockHolderProcess(t *testing.T) {
	path := os.Getenv(lockHolderEnv)
	if path == "" {
		t.Skip("only run as the lock holder of TestFlockReleasedWhenHolderDies")
	}
	if _, ok, err := tryLock(path); err != nil || !ok {
		t.Fatalf("tryLock() = %v, %v", ok, err)
	}
	os.Stdout.WriteString("locked\n")
	time.Sleep(time.Minute) // killed long before
}

// An instance killed while ordering (SIGKILL: no deferred unlock) does not
// block the others: the kernel lets go of its flock.
func TestFlockReleasedWhenHolderDies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "name+lock")
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHolderProcess$")
	cmd.Env = append(os.Environ(), lockHolderEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // "signal: killed"
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "locked" {
		t.Fatalf("lock holder said %q, %v", line, err)
	}
	if _, ok, err := tryLock(path); err != nil || ok {
		t.Fatalf("tryLock() while another process holds it = %v, %v; want busy", ok, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	unlock, ok, err := tryLock(path)
	if err != nil || !ok {
		t.Fatalf("tryLock() after the holder was killed = %v, %v; want the lock", ok, err)
	}
	unlock()
}

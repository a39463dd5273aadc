// Package proctest runs the project's binaries as real processes in
// end-to-end tests: build once in TestMain, start with arguments, wait for
// a line on stdout, send signals, collect the exit code and stderr.
package proctest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Build compiles each package (a path relative to the caller's package
// directory, e.g. "." or "../wsgate-backend") into dir, with the race
// detector when the C toolchain allows it, and returns the binaries' paths
// in the same order.
func Build(dir string, pkgs ...string) ([]string, error) {
	return build(dir, true, pkgs)
}

// BuildPlain is Build without the race detector: the binaries as users
// run them, for tests that measure a process's memory (the race runtime's
// shadow memory grows with the heap and is never given back).
func BuildPlain(dir string, pkgs ...string) ([]string, error) {
	return build(dir, false, pkgs)
}

func build(dir string, race bool, pkgs []string) ([]string, error) {
	bins := make([]string, len(pkgs))
	for i, pkg := range pkgs {
		name := filepath.Base(pkg)
		if pkg == "." {
			wd, err := os.Getwd()
			if err != nil {
				return nil, err
			}
			name = filepath.Base(wd)
		}
		bins[i] = filepath.Join(dir, name)
		out, err := goBuild(bins[i], pkg, race)
		if err != nil && race {
			// Without cgo there is no race runtime: build without it.
			out, err = goBuild(bins[i], pkg, false)
		}
		if err != nil {
			return nil, fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	return bins, nil
}

func goBuild(bin, pkg string, race bool) ([]byte, error) {
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	return exec.Command("go", append(args, pkg)...).CombinedOutput()
}

// SyncBuffer is a bytes.Buffer safe to read while a process writes to it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Output is what a process has written so far.
type Output interface{ String() string }

// Proc is a started process.
type Proc struct {
	t      testing.TB
	Cmd    *exec.Cmd
	Stderr Output
	lines  chan string
	done   chan struct{}
	err    error // Wait's result, valid once done is closed
}

// fileOutput is Output in a file (StartShared).
type fileOutput struct{ path string }

func (f fileOutput) String() string {
	b, _ := os.ReadFile(f.path)
	return string(b)
}

// StartShared is Start for a process whose output descendants share after
// it exits (a binary upgrade's new process): stdout and stderr go to files
// in dir, which the new process inherits too, so that waiting for the
// process does not wait for them. WaitLine reads the file as it grows; so
// does Stderr.String.
func StartShared(t testing.TB, dir, bin string, args ...string) *Proc {
	t.Helper()
	outPath, errPath := filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	errf, err := os.Create(errPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{t: t, Cmd: exec.Command(bin, args...), Stderr: fileOutput{errPath}, lines: make(chan string, 100), done: make(chan struct{})}
	p.Cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	p.Cmd.Stdout, p.Cmd.Stderr = out, errf
	dieWithTest(p.Cmd)
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out.Close()
	errf.Close()
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	stopTail := make(chan struct{})
	go tail(outPath, p.lines, stopTail)
	t.Cleanup(func() {
		close(stopTail)
		p.end(t, bin)
	})
	return p
}

// tail sends the lines of the file at path as they are written, until stop.
func tail(path string, lines chan<- string, stop <-chan struct{}) {
	var off int
	var partial string
	for {
		b, _ := os.ReadFile(path)
		if len(b) > off {
			text := partial + string(b[off:])
			off = len(b)
			parts := strings.Split(text, "\n")
			partial = parts[len(parts)-1]
			for _, l := range parts[:len(parts)-1] {
				select {
				case lines <- l:
				default: // nobody is reading: drop
				}
			}
		}
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// lineTimeout bounds WaitLine.
const lineTimeout = 20 * time.Second

// Start runs bin with args. The test's cleanup kills it if it still runs,
// and prints its stderr if the test failed.
func Start(t testing.TB, bin string, args ...string) *Proc {
	t.Helper()
	stderr := &SyncBuffer{}
	p := &Proc{t: t, Cmd: exec.Command(bin, args...), Stderr: stderr, lines: make(chan string, 100), done: make(chan struct{})}
	// The race runtime otherwise sleeps a second at exit; a race still
	// makes the process exit 66, which exit-code checks catch.
	p.Cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	p.Cmd.Stderr = stderr
	dieWithTest(p.Cmd)
	out, err := p.Cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody is reading: drop
			}
		}
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.end(t, bin) })
	return p
}

// end kills the process if it still runs and waits for it. It fails the
// test if the race detector reported a data race in the process: a
// race-built binary exits 66 after a race only when it exits by itself,
// and one that a cleanup kills never does. It logs the process's stderr
// if the test failed.
func (p *Proc) end(t testing.TB, bin string) {
	select {
	case <-p.done:
	default:
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
	if strings.Contains(p.Stderr.String(), "WARNING: DATA RACE") {
		t.Errorf("%s reported a data race (its stderr follows)", filepath.Base(bin))
	}
	if t.Failed() {
		t.Logf("%s stderr:\n%s", filepath.Base(bin), p.Stderr.String())
	}
}

// WaitLine returns the rest of the first stdout line that starts with
// prefix (leading and trailing spaces ignored).
func (p *Proc) WaitLine(prefix string) string {
	p.t.Helper()
	timeout := time.After(lineTimeout)
	for {
		select {
		case l := <-p.lines:
			if rest, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
				return strings.TrimSpace(rest)
			}
		case <-p.done:
			p.t.Fatalf("%s exited (%v) before printing %q; stderr:\n%s", p.Cmd.Path, p.err, prefix, p.Stderr.String())
		case <-timeout:
			p.t.Fatalf("%s did not print %q within %v", p.Cmd.Path, prefix, lineTimeout)
		}
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) {
	p.t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// Running reports whether the process has not exited (yet).
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exit waits up to d for the process to end and returns its exit code.
func (p *Proc) Exit(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("%s still running %v after it was asked to stop; stderr:\n%s", p.Cmd.Path, d, p.Stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	default:
		p.t.Fatalf("%s: %v", p.Cmd.Path, p.err)
		return -1
	}
}

// UnusedAddr returns a loopback TCP address where nothing listens: it was
// free a moment ago, so a dial to it is refused (until something takes it).
func UnusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// SocketDir returns a new directory for unix sockets, removed when the
// test ends. It is made under the system temp directory rather than
// t.TempDir, whose long paths can exceed the ~100 bytes a socket path may
// have.
func SocketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wsgate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// WaitFor polls cond until it holds, failing the test after 10 seconds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

//go:build linux && !wsgate_portable

package sockio

import (
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// runParker returns a new Parker whose Wait runs until the test ends.
func runParker(t *testing.T) *Parker {
	t.Helper()
	p, err := NewParker()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Wait()
	}()
	t.Cleanup(func() {
		p.Stop()
		<-done
		p.Close()
	})
	return p
}

// TestParkerWaitsInThePoller checks that the parker waits for its epoll set
// in the runtime's poller ("IO wait"), not in a blocking epoll_wait
// ("syscall"), which would keep its P and, with GOMAXPROCS=1, stall every
// other goroutine until sysmon took the P back.
func TestParkerWaitsInThePoller(t *testing.T) {
	_ = runParker(t)
	header := regexp.MustCompile(`^goroutine \d+ \[([^\]]*)\]:`)
	state := ""
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if m := header.FindStringSubmatch(g); m != nil && strings.Contains(g, "(*Parker).Wait(") {
				state = m[1]
			}
		}
		if state != "" && state != "running" && state != "runnable" {
			break
		}
	}
	if !regexp.MustCompile(`^IO wait`).MatchString(state) {
		t.Fatalf("the parker's goroutine waits in state %q, want IO wait", state)
	}
}

// wakeCounter is a Waker that counts its wake-ups.
type wakeCounter struct{ n chan struct{} }

func (w *wakeCounter) Wake() { w.n <- struct{}{} }

// TestParkerTokens checks the parker's slots: a forgotten registration's
// slot is reused under a new token, the old token finds nothing, and an
// event wakes the Waker parked under the live token.
func TestParkerTokens(t *testing.T) {
	p := runParker(t)
	peer, c := tcpPair(t)
	s := newRawSock(c)
	w1, w2 := &wakeCounter{n: make(chan struct{}, 1)}, &wakeCounter{n: make(chan struct{}, 1)}

	tok1, ok := p.Park(s, w1)
	if !ok || tok1 == 0 {
		t.Fatalf("Park = %d, %v; want a token", tok1, ok)
	}
	p.Forget(s, tok1)
	tok2, ok := p.Park(s, w2)
	if !ok || tok2 == tok1 {
		t.Fatalf("Park after Forget = %d, %v; want a new token (the old was %d)", tok2, ok, tok1)
	}
	p.mu.Lock()
	stale, live, n := p.lookupLocked(tok1), p.lookupLocked(tok2), len(p.slots)
	p.mu.Unlock()
	if stale != nil || live != w2 || n != 1 {
		t.Fatalf("lookup(old) = %v, lookup(new) = %v, slots = %d; want nil, w2, 1 (the slot reused)", stale, live, n)
	}
	if got := p.Parked(); len(got) != 1 || got[0] != w2 {
		t.Fatalf("Parked() = %v, want [w2]", got)
	}

	if _, err := peer.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w2.n:
	case <-time.After(5 * time.Second):
		t.Fatal("the parked Waker was not woken by data")
	}
	select {
	case <-w1.n:
		t.Fatal("the forgotten Waker was woken")
	default:
	}
	p.Forget(s, tok2)
	if got := p.Parked(); len(got) != 0 {
		t.Fatalf("Parked() after Forget = %v, want none", got)
	}
}

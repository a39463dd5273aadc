//go:build linux && !wsgate_portable

package sockio

import (
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestParkerWaitsInThePoller checks that the parker waits for its epoll set
// in the runtime's poller ("IO wait"), not in a blocking epoll_wait
// ("syscall"), which would keep its P and, with GOMAXPROCS=1, stall every
// other goroutine until sysmon took the P back.
func TestParkerWaitsInThePoller(t *testing.T) {
	p, err := NewParker()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Wait()
	}()
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
	p.Stop()
	<-done
	p.Close()
	if !regexp.MustCompile(`^IO wait`).MatchString(state) {
		t.Fatalf("the parker's goroutine waits in state %q, want IO wait", state)
	}
}

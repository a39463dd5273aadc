//go:build unix

// The binary upgrade (SIGUSR2, inherited descriptors) is Unix only.

package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsgate/wsgate/internal/proctest"
	"github.com/wsgate/wsgate/registry"
)

// upgradeGate is a `wsgate run` whose output goes to files that the
// processes of its binary upgrades share, with a PID file.
type upgradeGate struct {
	*gate
	pidFile string
}

func startUpgradeGate(t *testing.T, gc gateConfig) *upgradeGate {
	t.Helper()
	g, dir := newGate(t, gc)
	ug := &upgradeGate{gate: g, pidFile: filepath.Join(dir, "wsgate.pid")}
	g.serving(proctest.StartShared(t, dir, wsgateBin, "run", "-config", g.path, "-pid-file", ug.pidFile, "-log-level", "debug"))
	waitFor(t, "the PID file", func() bool { return ug.pid() == g.Cmd.Process.Pid })
	// The processes of later generations are not this test's children:
	// end whichever serves at the end.
	t.Cleanup(func() {
		if pid := ug.pid(); pid != 0 && pid != g.Cmd.Process.Pid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return ug
}

// pid is the PID in the PID file, 0 if none.
func (ug *upgradeGate) pid() int {
	b, err := os.ReadFile(ug.pidFile)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// upgradeTo sends SIGUSR2 to the process pid and waits for the new one
// to serve; it returns the new PID.
func (ug *upgradeGate) upgradeTo(t *testing.T, pid int) int {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	var next int
	waitFor(t, "the new process to serve", func() bool {
		next = ug.pid()
		return next != 0 && next != pid
	})
	return next
}

// prober opens a connection through addr every 50 ms, echoes one message
// and closes it, until stop; it counts what failed.
type prober struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	done       chan struct{}
}

func startProber(t *testing.T, addr string, roots *x509.CertPool) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}, HandshakeTimeout: 5 * time.Second}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for n := 0; n < 2000; n++ { // bounded: 100 s at the most
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			err := func() error {
				c, _, err := d.Dial("wss://"+addr+"/ws", nil)
				if err != nil {
					return fmt.Errorf("dial: %w", err)
				}
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if err := c.WriteMessage(websocket.TextMessage, []byte("probe")); err != nil {
					return fmt.Errorf("write (local %s): %w", c.LocalAddr(), err)
				}
				if _, _, err = c.ReadMessage(); err != nil {
					return fmt.Errorf("read echo (local %s): %w", c.LocalAddr(), err)
				}
				return nil
			}()
			if err != nil {
				p.failed.Add(1)
				p.mu.Lock()
				p.errs = append(p.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
				p.mu.Unlock()
				continue
			}
			p.ok.Add(1)
		}
	}()
	return p
}

func (p *prober) end(t *testing.T) {
	close(p.stop)
	<-p.done
	t.Logf("prober: %d connections, %d failed %v", p.ok.Load()+p.failed.Load(), p.failed.Load(), p.errs)
	if p.failed.Load() > 0 {
		t.Errorf("%d of %d probe connections failed across the upgrade: %v", p.failed.Load(), p.ok.Load()+p.failed.Load(), p.errs)
	}
}

func TestBinaryUpgrade(t *testing.T) {
	_, a := startBackend(t, "a")
	_, b := startBackend(t, "b")
	g := startUpgradeGate(t, gateConfig{backends: []string{a, b}, health: fastHealth,
		extra: "shutdown:\n  drain_timeout: 2s\n  upgrade_timeout: 1m\n"})
	waitProbed(t, g.gate)
	oldPid := g.Cmd.Process.Pid

	// The old process holds 7 connections on a and 3 on b: 3 each, then b
	// drained for 4 more, then undrained.
	var held []*websocket.Conn
	hold := func(n int) {
		for range n {
			c, _ := g.dial(t, "/ws")
			held = append(held, c)
		}
	}
	hold(6)
	adminPost(t, g.gate, "/api/backends/drain", b)
	hold(4)
	adminPost(t, g.gate, "/api/backends/undrain", b)
	if st := backendState(t, g.gate, a); st.ActiveConnections != 7 {
		t.Fatalf("old process holds %d on a, want 7", st.ActiveConnections)
	}

	probe := startProber(t, g.proxyAddr, g.roots)
	newPid := g.upgradeTo(t, oldPid)
	t.Logf("upgraded: %d → %d", oldPid, newPid)
	waitFor(t, "both processes to log the other's PID", func() bool {
		return strings.Contains(g.Stderr.String(), "new_pid="+strconv.Itoa(newPid)) &&
			strings.Contains(g.Stderr.String(), "old_pid="+strconv.Itoa(oldPid))
	})

	// The new process counts the old one's tunnels: its next 4 connections
	// go to b, which holds 3 to a's 7 (without them they would split 2:2).
	waitFor(t, "the old process's counts to reach the new one", func() bool {
		for _, st := range getBackends(t, g.adminURL) {
			if st.Address == a && st.InheritedConnections == 7 {
				return true
			}
		}
		return false
	})
	for i := range 4 {
		c, id := g.dial(t, "/ws")
		if id != "b" {
			t.Errorf("connection %d through the new process went to %s, want b (a is fuller counting the old process's)", i, id)
		}
		c.Close()
	}
	// The old process's tunnels work on.
	for _, c := range held {
		echo(t, c, "held across the upgrade")
	}
	// It exits once they end.
	for _, c := range held {
		c.Close()
	}
	if code := g.Exit(10 * time.Second); code != 0 {
		t.Errorf("old process exit code %d, want 0", code)
	}
	probe.end(t)
	// The new process serves on, with everything.
	c, _ := g.dial(t, "/ws")
	echo(t, c, "after the old one left")
	resp, err := adminClient.Get(g.adminURL + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("admin /healthz of the new process: %v, %v", resp, err)
	}
	resp.Body.Close()
}

// A new upgrade may start while an older generation still drains, and the
// newest counts both; an old generation past upgrade_timeout closes its
// tunnels with 1001 and exits 0.
func TestBinaryUpgradeTwiceAndTimeout(t *testing.T) {
	_, a := startBackend(t, "a")
	_, b := startBackend(t, "b")
	g := startUpgradeGate(t, gateConfig{backends: []string{a, b}, health: fastHealth,
		extra: "shutdown:\n  drain_timeout: 2s\n  close_spread: 0s\n  upgrade_timeout: 3s\n"})
	waitProbed(t, g.gate)
	gen1 := g.Cmd.Process.Pid
	c1, _ := g.dial(t, "/ws") // held by generation 1
	code1 := make(chan int, 1)
	go func() { code1 <- closeCode(t, c1) }()

	probe := startProber(t, g.proxyAddr, g.roots)
	gen2 := g.upgradeTo(t, gen1)
	c2, _ := g.dial(t, "/ws") // held by generation 2
	gen3 := g.upgradeTo(t, gen2)
	t.Logf("generations %d → %d → %d", gen1, gen2, gen3)
	// Generation 3 counts both older ones' tunnels.
	waitFor(t, "both older generations' counts", func() bool {
		var inherited int64
		for _, st := range getBackends(t, g.adminURL) {
			inherited += st.InheritedConnections
		}
		t.Logf("inherited %d: %+v", inherited, getBackends(t, g.adminURL))
		return inherited == 2
	})
	// upgrade_timeout (3s) passes for generation 1: its client gets 1001.
	select {
	case code := <-code1:
		if code != websocket.CloseGoingAway {
			t.Errorf("generation 1's client got close %d, want 1001", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("generation 1 did not close its tunnel after upgrade_timeout")
	}
	if code := g.Exit(5 * time.Second); code != 0 {
		t.Errorf("generation 1 exit code %d, want 0", code)
	}
	c2.Close()
	probe.end(t)
	// Generation 3 serves, and forgets generation 1's count once it left.
	waitFor(t, "generation 1's count to be forgotten", func() bool {
		var inherited int64
		for _, st := range getBackends(t, g.adminURL) {
			inherited += st.InheritedConnections
		}
		return inherited == 0
	})
	c, _ := g.dial(t, "/ws")
	echo(t, c, "generation 3")
}

func TestRoutable(t *testing.T) {
	discover := &registry.Discover{Name: "app.internal", Type: "A", Port: 9001}
	for _, tc := range []struct {
		name     string
		pools    []registry.Pool
		backends []registry.Backend
		want     bool
	}{
		{"static pool", []registry.Pool{{Name: "app"}}, []registry.Backend{{Pool: "app", Address: "a"}}, true},
		{"a backend waits for its first probe", []registry.Pool{{Name: "app"}}, []registry.Backend{{Pool: "app", Health: registry.HealthPending}}, false},
		{"discovery has found nothing yet", []registry.Pool{{Name: "app", Discover: discover}}, nil, false},
		{"discovery found a probed backend", []registry.Pool{{Name: "app", Discover: discover}}, []registry.Backend{{Pool: "app", Health: registry.HealthUp}}, true},
	} {
		if got := routable(tc.pools, tc.backends); got != tc.want {
			t.Errorf("%s: routable() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

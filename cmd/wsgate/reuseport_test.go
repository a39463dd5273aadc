package main

import (
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/proctest"
)

// Two `wsgate run` processes share one config file with reuse_port: the
// second takes its own admin address from -admin, both listen on the
// file's TLS address, and both get connections.
func TestReusePortTwoProcesses(t *testing.T) {
	_, b1 := startBackend(t, "b1")
	addr, adminAddr := proctest.UnusedAddr(t), proctest.UnusedAddr(t)
	g1 := startGateWith(t, gateConfig{listen: addr, admin: adminAddr, backends: []string{b1}, extra: "reuse_port: true\n"})
	p2 := start(t, wsgateBin, "run", "-config", g1.path, "-admin", "127.0.0.1:0")
	if got := strings.TrimPrefix(p2.WaitLine("wsgate: proxy listening on"), "https://"); got != addr {
		t.Fatalf("second process listens on %s, want %s", got, addr)
	}
	admin2 := p2.WaitLine("wsgate: admin listening on")
	if admin2 == g1.adminURL || g1.adminURL != "http://"+adminAddr {
		t.Fatalf("admin listeners %s and %s; want the file's %s and another", g1.adminURL, admin2, adminAddr)
	}

	// The kernel spreads connections by a hash of their addresses: with
	// 40, one process getting none has odds of 2^-39.
	for range 40 {
		c, _ := dialWSS(t, addr, "/ws", g1.roots)
		c.Close()
	}
	for _, adminURL := range []string{g1.adminURL, admin2} {
		proctest.WaitFor(t, "connections through "+adminURL+"'s process", func() bool {
			var total int64
			for _, b := range getBackends(t, adminURL) {
				total += b.TotalConnections
			}
			return total > 0
		})
	}
}

// Without reuse_port a second process on the same file cannot listen:
// it says why and exits 1.
func TestSecondProcessWithoutReusePort(t *testing.T) {
	_, b1 := startBackend(t, "b1")
	g1 := startGateWith(t, gateConfig{listen: proctest.UnusedAddr(t), backends: []string{b1}})
	p2 := start(t, wsgateBin, "run", "-config", g1.path, "-admin", "127.0.0.1:0")
	if code := p2.Exit(20 * time.Second); code != 1 {
		t.Errorf("second process: exit %d, want 1", code)
	}
	for _, want := range []string{"wsgate run: tls listener: listen tcp", "address already in use", "reuse_port: true"} {
		if !strings.Contains(p2.Stderr.String(), want) {
			t.Errorf("second process said %q; want %q", p2.Stderr.String(), want)
		}
	}
}

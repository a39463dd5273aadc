package main

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestSlowStartReconnectStorm runs three reference backends behind a real
// wsgate, holds 30 connections on each, and restarts one: its clients
// reconnect to the other two (45 each), and once it is healthy again a
// storm of 60 new connections arrives. With slow_start the restarted
// backend takes a bounded share of them (about a tenth of the others'
// load at first); then a reload turns slow_start off, and the same restart
// sends it every connection until it has caught up with the others.
func TestSlowStartReconnectStorm(t *testing.T) {
	const (
		perBackend = 30
		stormSize  = 60
	)
	addrOf := map[string]string{}
	procs := map[string]*proc{}
	var addrs []string
	for _, id := range []string{"a", "b", "c"} {
		procs[id], addrOf[id] = startBackend(t, id)
		addrs = append(addrs, addrOf[id])
	}
	// A window much longer than the storm: it runs at about the floor.
	gc := gateConfig{backends: addrs, health: fastHealth, pool: "    slow_start: 2m\n"}
	g := startGateWith(t, gc)
	waitProbed(t, g)

	// storm holds perBackend connections on each backend, restarts c as
	// c<n>, reconnects c's clients, opens stormSize connections at once
	// when c is back, and returns where those went. It closes every
	// connection it opened before returning.
	restarts := 0
	storm := func() map[string]int {
		t.Helper()
		var conns []*websocket.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
			waitFor(t, "the storm's connections to be released", func() bool {
				for _, be := range getBackends(t, g.adminURL) {
					if be.ActiveConnections != 0 {
						return false
					}
				}
				return true
			})
		}()
		var onC []*websocket.Conn
		held := map[string]int{}
		for range 3 * perBackend {
			c, id := g.dial(t, "/ws")
			conns = append(conns, c)
			held[id[:1]]++
			if id[:1] == "c" {
				onC = append(onC, c)
			}
		}
		if held["a"] != perBackend || held["b"] != perBackend || held["c"] != perBackend {
			t.Fatalf("held connections per backend = %v, want %d each", held, perBackend)
		}

		// Restart c: it closes its connections with 1001 and exits; it
		// is down before its clients come back.
		procs["c"].Signal(syscall.SIGTERM)
		for _, c := range onC {
			if code := closeCode(t, c); code != websocket.CloseGoingAway {
				t.Fatalf("a connection on c closed with %d, want 1001", code)
			}
		}
		if code := procs["c"].Exit(5 * time.Second); code != 0 {
			t.Fatalf("c exited %d, want 0", code)
		}
		waitFor(t, "c to be marked unhealthy", func() bool { return backendState(t, g, addrOf["c"]).State == "unhealthy" })
		for range onC {
			c, id := g.dial(t, "/ws")
			conns = append(conns, c)
			if id[:1] == "c" {
				t.Fatalf("a reconnect went to %s while c is down", id)
			}
		}
		restarts++
		procs["c"] = start(t, backendBin, "-listen", addrOf["c"], "-id", fmt.Sprintf("c%d", restarts+1), "-drain-timeout", "2s", noLoadReport)
		procs["c"].WaitLine("listening on")
		waitFor(t, "c to be healthy again", func() bool { return backendState(t, g, addrOf["c"]).State == "healthy" })

		// The storm: stormSize dials, 6 at a time.
		var mu sync.Mutex
		got := map[string]int{}
		var errs []error
		var wg sync.WaitGroup
		next := make(chan struct{})
		for range 6 {
			wg.Go(func() {
				for range next {
					c, id, err := tryDialWSS(g.proxyAddr, "/ws", g.roots)
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else {
						conns = append(conns, c)
						got[id[:1]]++
					}
					mu.Unlock()
				}
			})
		}
		for range stormSize {
			next <- struct{}{}
		}
		close(next)
		wg.Wait()
		if len(errs) != 0 {
			t.Fatalf("%d of the storm's %d dials failed: %v", len(errs), stormSize, errors.Join(errs...))
		}
		return got
	}

	with := storm()
	// A reload turns slow start off for the next restart.
	gc.pool = ""
	g.writeConfig(t, gc)
	g.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return strings.Contains(g.Stderr.String(), "generation=2") })
	without := storm()

	t.Logf("a storm of %d new connections right after c restarted, with a and b holding %d each and c none:\n"+
		"  slow_start 2m: a %d, b %d, c %d\n  slow_start off: a %d, b %d, c %d",
		stormSize, 3*perBackend/2, with["a"], with["b"], with["c"], without["a"], without["b"], without["c"])
	// With: at most about 10-12% of the others' 45-75 (plus the first
	// connection, which is free); without: all of the first 45, then a
	// third of the rest.
	if with["c"] > stormSize/4 {
		t.Errorf("with slow_start the restarted backend took %d of the storm's %d connections, want at most %d", with["c"], stormSize, stormSize/4)
	}
	if with["c"] == 0 {
		t.Errorf("with slow_start the restarted backend took none of the storm, want some")
	}
	if without["c"] < 3*perBackend/2 {
		t.Errorf("without slow_start the restarted backend took %d of the storm's %d connections, want at least %d (least connections fills it first)", without["c"], stormSize, 3*perBackend/2)
	}
}

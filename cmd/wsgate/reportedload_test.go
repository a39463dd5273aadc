package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/proctest"
)

// TestReportedLoadTwoProcesses runs two wsgate processes, A and B, each
// with its own config file and port, in front of the same three reference
// backends, and opens connections through them unevenly:
//
//  1. while backend c is down, 60 through A, which puts 30 on a and b each;
//  2. c comes up (a new backend, or one restarted), and once both
//     processes have probed it, 60 through B, as fast as they dial.
//
// With the backends reporting their connections (X-Backend-Connections),
// B balances the pool's total: it fills c up to the others first, then
// spreads, and the totals end within ±3 of 40 each. Without (the control:
// wsgate-backend -report-load=false), B balances only its own 60, 20 each,
// and the totals stay 50, 50 and 20: per-process counting is even only if
// every process saw the same backends all along.
func TestReportedLoadTwoProcesses(t *testing.T) {
	const perGate, even = 60, 40
	var reported, control map[string]int
	t.Run("reported", func(t *testing.T) { reported = twoGatesSpread(t, true, perGate) })
	t.Run("control", func(t *testing.T) { control = twoGatesSpread(t, false, perGate) })
	if reported == nil || control == nil {
		return // a subtest failed; it said why
	}
	t.Logf("connections per backend after 60 through A (c down), then 60 through B (c up); even is %d each:\n"+
		"  reported load (X-Backend-Connections): %s\n"+
		"  control, per-process counts only:      %s", even, spread(reported, even), spread(control, even))
	for _, id := range []string{"a", "b", "c"} {
		if n := reported[id]; n < even-3 || n > even+3 {
			t.Errorf("with reported load, backend %s holds %d, want %d±3", id, n, even)
		}
	}
	if d := maxDeviation(control, even); d <= 3 {
		t.Errorf("the control is within ±%d of even too: this scenario does not show what reported load is for", d)
	}
}

// twoGatesSpread runs the scenario of TestReportedLoadTwoProcesses, with
// backends that report their load or not, and returns how many of the
// connections each backend holds, by X-Backend-Id.
func twoGatesSpread(t *testing.T, reportLoad bool, perGate int) map[string]int {
	flag := "-report-load=" + strconv.FormatBool(reportLoad)
	startOn := func(id, addr string) string {
		p := start(t, backendBin, "-listen", addr, "-id", id, "-drain-timeout", "2s", flag)
		return p.WaitLine("listening on")
	}
	// c's address is free until c starts: probes of it are refused.
	addrOf := map[string]string{"a": startOn("a", "127.0.0.1:0"), "b": startOn("b", "127.0.0.1:0"), "c": proctest.UnusedAddr(t)}
	gc := gateConfig{backends: []string{addrOf["a"], addrOf["b"], addrOf["c"]}, health: fastHealth}
	gateA, gateB := startGateWith(t, gc), startGateWith(t, gc)
	for _, g := range []*gate{gateA, gateB} {
		waitFor(t, "a and b healthy and c down in "+g.adminURL, func() bool {
			return verdict(t, g, addrOf["a"]) == "healthy" && verdict(t, g, addrOf["b"]) == "healthy" &&
				verdict(t, g, addrOf["c"]) == "unhealthy"
		})
	}

	held := map[string]int{}
	for range perGate {
		_, id := gateA.dial(t, "/ws")
		held[id]++
	}
	// Even, but for a probe that lands while a connection is being set up:
	// the backend's count then misses it, and the reported figure is one
	// off until the next probe.
	if d := max(held["a"]-held["b"], held["b"]-held["a"]); d > 2 || held["c"] != 0 {
		t.Fatalf("A put its %d connections %v while c was down, want about %d on a and b each", perGate, held, perGate/2)
	}

	startOn("c", addrOf["c"])
	for _, g := range []*gate{gateA, gateB} {
		waitFor(t, "c healthy in "+g.adminURL, func() bool { return verdict(t, g, addrOf["c"]) == "healthy" })
	}
	if reportLoad {
		// B's probes have seen A's connections.
		want := map[string]int64{}
		for id, addr := range addrOf {
			want[addr] = int64(held[id])
		}
		waitFor(t, fmt.Sprintf("B to hold reports of A's connections %v", held), func() bool {
			for _, be := range getBackends(t, gateB.adminURL) {
				if be.ReportedConnections == nil || *be.ReportedConnections != want[be.Address] {
					return false
				}
			}
			return true
		})
	}

	for range perGate {
		_, id := gateB.dial(t, "/ws")
		held[id]++
	}

	// The backends' own view agrees: their X-Backend-Connections when they
	// report it, else the sum of what the two processes count.
	for id, addr := range addrOf {
		var n int64
		if reportLoad {
			n = healthzConnections(t, addr)
		} else {
			n = activeOn(t, gateA, addr) + activeOn(t, gateB, addr)
		}
		if n != int64(held[id]) {
			t.Errorf("backend %s counts %d connections, the clients %d", id, n, held[id])
		}
	}
	// Each process's active_connections stays its own.
	for _, g := range []*gate{gateA, gateB} {
		var sum int64
		for _, be := range getBackends(t, g.adminURL) {
			sum += be.ActiveConnections
		}
		if sum != int64(perGate) {
			t.Errorf("%s: active_connections add up to %d, want its own %d", g.adminURL, sum, perGate)
		}
	}
	return held
}

// verdict returns the backend's state in g once a probe has given one,
// and "unprobed" before.
func verdict(t *testing.T, g *gate, addr string) string {
	b := backendState(t, g, addr)
	if b.HealthReason == "" {
		return "unprobed"
	}
	return b.State
}

// activeOn returns g's active_connections to the backend at addr.
func activeOn(t *testing.T, g *gate, addr string) int64 {
	return backendState(t, g, addr).ActiveConnections
}

// healthzConnections returns the X-Backend-Connections of the backend's
// /healthz.
func healthzConnections(t *testing.T, addr string) int64 {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n, err := strconv.ParseInt(resp.Header.Get("X-Backend-Connections"), 10, 64)
	if err != nil {
		t.Fatalf("GET http://%s/healthz: X-Backend-Connections: %v", addr, err)
	}
	return n
}

// spread formats per-backend totals with their distance from even.
func spread(held map[string]int, even int) string {
	var parts []string
	for _, id := range []string{"a", "b", "c"} {
		parts = append(parts, fmt.Sprintf("%s %d (%+d)", id, held[id], held[id]-even))
	}
	return strings.Join(parts, ", ") + fmt.Sprintf("; at most %d from even", maxDeviation(held, even))
}

func maxDeviation(held map[string]int, even int) int {
	d := 0
	for _, id := range []string{"a", "b", "c"} {
		d = max(d, held[id]-even, even-held[id])
	}
	return d
}

//go:build unix

// The supervisor example is a bash script driven with Unix signals.

package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The systemd template unit of "Several processes on one port": systemd
// itself finds nothing to say of it, but that the binary is not installed
// here, and instance N runs the wsgate run command the README gives.
func TestSystemdUnit(t *testing.T) {
	unit := filepath.Join("..", "..", "examples", "systemd", "wsgate@.service")
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	var execStart, timeout string
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "ExecStart="); ok {
			execStart = v
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "TimeoutStopSec="); ok {
			timeout = v
		}
	}
	if got, want := strings.ReplaceAll(execStart, "%i", "3"), "/usr/local/bin/wsgate run -config /etc/wsgate/wsgate.yaml -admin 127.0.0.1:9093"; got != want {
		t.Errorf("instance 3 runs %q, want %q", got, want)
	}
	// Longer than the default drain_timeout (10s) + 5s, as README says.
	if s, err := strconv.Atoi(timeout); err != nil || s < 15 {
		t.Errorf("TimeoutStopSec=%s, want at least drain_timeout + 5 s", timeout)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found: the unit's syntax is not checked")
	}
	// As an instance, so that %i is expanded as systemd would.
	inst := filepath.Join(t.TempDir(), "wsgate@1.service")
	if err := os.WriteFile(inst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(analyze, "verify", inst).CombinedOutput()
	bin := strings.Fields(execStart)[0]
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if _, err := os.Stat(bin); err != nil && line == "wsgate@1.service: Command "+bin+" is not executable: No such file or directory" {
			continue // installed on the real host
		}
		t.Errorf("systemd-analyze verify: %s", line)
	}
}

// examples/supervise/wsgate-pool.sh runs N processes on one port, passes
// SIGHUP to each, restarts one that dies, and drains them all on SIGTERM.
func TestSupervisorScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	_, a := startBackend(t, "a")
	dir := t.TempDir()
	g := &gate{path: filepath.Join(dir, "wsgate.yaml")}
	g.certFile, g.keyFile, g.roots = tlsFiles(t, dir)
	g.proxyAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	g.writeConfig(t, gateConfig{listen: g.proxyAddr, backends: []string{a}, extra: "reuse_port: true\nshutdown:\n  drain_timeout: 2s\n"})
	script, err := filepath.Abs(filepath.Join("..", "..", "examples", "supervise", "wsgate-pool.sh"))
	if err != nil {
		t.Fatal(err)
	}

	t.Setenv("WSGATE", wsgateBin)
	pool := start(t, "bash", script, "2", g.path, "127.0.0.1:0")
	pids := map[string]int{} // instance → pid
	t.Cleanup(func() {
		// If the script was killed, its processes are not.
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	// started reads stdout until n processes have started and listen,
	// and returns their admin URLs.
	started := func(n int) []string {
		t.Helper()
		var admins []string
		for starts := 0; starts < n || len(admins) < n; {
			line := pool.WaitLine("")
			if rest, ok := strings.CutPrefix(line, "wsgate-pool: instance "); ok {
				var inst string
				var pid int
				if _, err := fmt.Sscanf(rest, "%s pid %d", &inst, &pid); err != nil {
					t.Fatalf("start line %q: %v", line, err)
				}
				pids[inst] = pid
				starts++
			}
			if url, ok := strings.CutPrefix(line, "wsgate: admin listening on "); ok {
				admins = append(admins, url)
			}
		}
		return admins
	}
	healthy := func(admins []string) {
		t.Helper()
		for _, url := range admins {
			resp, err := http.Get(url + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET %s/healthz = %d, want 200", url, resp.StatusCode)
			}
		}
		c, _ := g.dial(t, "/ws")
		echo(t, c, "through the pool")
	}
	healthy(started(2))
	if len(pids) != 2 {
		t.Fatalf("instances %v, want 1 and 2", pids)
	}

	// SIGHUP reaches every process.
	pool.Signal(syscall.SIGHUP)
	waitFor(t, "both processes to reload", func() bool { return strings.Count(pool.Stderr.String(), `msg="config reloaded"`) == 2 })

	// One dies: it is started again, on the same port.
	old := pids["1"]
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	healthy(started(1))
	if pids["1"] == old {
		t.Fatalf("instance 1 was not started again (pid %d)", old)
	}

	// SIGTERM drains them all, and the script exits 0 once they have.
	pool.Signal(syscall.SIGTERM)
	if code := pool.Exit(10 * time.Second); code != 0 {
		t.Errorf("wsgate-pool.sh exit code after SIGTERM = %d, want 0", code)
	}
	for inst, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("instance %s (pid %d) still runs after the pool exited", inst, pid)
		}
	}
	if n := strings.Count(pool.Stderr.String(), `msg=stopped`); n != 2 {
		t.Errorf("%d processes logged a clean stop, want 2", n)
	}
}

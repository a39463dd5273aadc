package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsgate/wsgate/admin"
	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/internal/proctest"
)

// runStatus runs wsgate status with args and the environment variable
// WSGATE_ADMIN_TOKEN set to envToken (unset when "").
func runStatus(t *testing.T, envToken string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wsgateBin, append([]string{"status"}, args...)...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, config.AdminTokenEnv+"=") })
	if envToken != "" {
		cmd.Env = append(cmd.Env, config.AdminTokenEnv+"="+envToken)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	_ = cmd.Run()
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// TestAdminTokenAndStatus runs wsgate with admin.token_file: the admin
// endpoints need the token, wsgate status shows the backends with it and
// fails clearly without it, and a SIGHUP reads a new token.
func TestAdminTokenAndStatus(t *testing.T) {
	const token = "first-token"
	dir := t.TempDir()
	tokenFile := writeToken(t, dir, token)
	_, one := startBackend(t, "one")
	_, two := startBackend(t, "two")
	g := startGateWith(t, gateConfig{backends: []string{one, two}, adminKeys: "  token_file: " + tokenFile + "\n"})
	held, _ := g.dial(t, "/ws")
	echo(t, held, "held")

	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", 200},
		{"/", "", 200},
		{"/api/backends", "", 401},
		{"/api/backends", "wrong", 401},
		{"/api/backends", token, 200},
		{"/metrics", "", 401},
		{"/metrics", token, 200},
	} {
		if got, _ := adminGet(t, g.adminURL, tc.path, tc.token); got != tc.want {
			t.Errorf("GET %s with token %q = %d, want %d", tc.path, tc.token, got, tc.want)
		}
	}

	code, out, errOut := runStatus(t, "", "-admin", g.adminURL, "-token-file", tokenFile)
	if code != 0 {
		t.Fatalf("wsgate status = exit %d, stderr %q; want 0", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "POOL BACKEND STATE ACTIVE TOTAL" {
		t.Fatalf("wsgate status printed:\n%s\nwant a header and one line per backend", out)
	}
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 5 {
			t.Fatalf("row %q: want 5 columns", l)
		}
		rows[f[1]] = f
		// Aligned: every column starts where its heading does.
		for _, h := range []string{"BACKEND", "STATE", "ACTIVE", "TOTAL"} {
			col := strings.Index(lines[0], h)
			if col >= len(l) || l[col] == ' ' || l[col-1] != ' ' {
				t.Errorf("row %q: no column starting under %s (at %d)", l, h, col)
			}
		}
	}
	var active, total int
	for _, addr := range []string{one, two} {
		r := rows[addr]
		if r == nil || r[0] != "app" || r[2] != "healthy" {
			t.Errorf("status row for %s = %v, want pool app, healthy", addr, r)
			continue
		}
		a, err1 := strconv.Atoi(r[3])
		tt, err2 := strconv.Atoi(r[4])
		if err := errors.Join(err1, err2); err != nil {
			t.Errorf("status row for %s = %v: counts: %v", addr, r, err)
			continue
		}
		active, total = active+a, total+tt
	}
	if active != 1 || total != 1 {
		t.Errorf("status shows %d active, %d total over the backends; want the held connection: 1, 1", active, total)
	}

	// The environment variable, and -admin as host:port.
	if code, _, errOut := runStatus(t, token, "-admin", strings.TrimPrefix(g.adminURL, "http://")); code != 0 {
		t.Errorf("wsgate status with %s = exit %d, stderr %q; want 0", config.AdminTokenEnv, code, errOut)
	}
	for _, tc := range []struct {
		name, env string
		args      []string
		want      []string // in stderr
	}{
		{"no token", "", []string{"-admin", g.adminURL}, []string{"needs a token", "401", config.AdminTokenEnv}},
		{"wrong token", "wrong", []string{"-admin", g.adminURL}, []string{"refused the token", "401"}},
		{"unreachable", token, []string{"-admin", "http://" + proctest.UnusedAddr(t)}, []string{"cannot reach the admin listener"}},
		{"missing token file", "", []string{"-admin", g.adminURL, "-token-file", filepath.Join(dir, "nope")}, []string{"token file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runStatus(t, tc.env, tc.args...)
			if code != 1 || out != "" {
				t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q does not say %q", errOut, w)
				}
			}
		})
	}

	// A new token in the file, then SIGHUP: the new one opens, the old
	// one no longer does.
	writeToken(t, dir, "second-token")
	g.Signal(syscall.SIGHUP)
	waitFor(t, "the new token to be taken", func() bool {
		code, _ := adminGet(t, g.adminURL, "/api/backends", "second-token")
		return code == http.StatusOK
	})
	if code, _ := adminGet(t, g.adminURL, "/api/backends", token); code != http.StatusUnauthorized {
		t.Errorf("old token after the reload: %d, want 401", code)
	}
	mfs := scrape(t, g.adminURL, "second-token")
	if got := values(mfs, "wsgate_config_reloads_total", "result"); got["ok"] != 1 || got["error"] != 0 {
		t.Errorf("wsgate_config_reloads_total = %v, want ok 1, error 0", got)
	}
	if got := values(mfs, "wsgate_config_generation")[""]; got != 2 {
		t.Errorf("wsgate_config_generation = %v, want 2", got)
	}
	if strings.Contains(g.Stderr.String(), "second-token") || strings.Contains(g.Stderr.String(), token) {
		t.Errorf("a token appears in the log:\n%s", g.Stderr.String())
	}
}

// The optional columns appear when some backend has the figure.
func TestWriteStatusColumns(t *testing.T) {
	n := int64(7)
	for _, tc := range []struct {
		name     string
		backends []admin.BackendStatus
		want     []string
	}{
		{"plain", []admin.BackendStatus{{Pool: "app", Address: "a:1", State: "healthy", ActiveConnections: 2, TotalConnections: 5}},
			[]string{"POOL BACKEND STATE ACTIVE TOTAL", "app a:1 healthy 2 5"}},
		{"reported by one", []admin.BackendStatus{
			{Pool: "app", Address: "a:1", State: "healthy", ActiveConnections: 2, TotalConnections: 5, ReportedConnections: &n},
			{Pool: "app", Address: "b:1", State: "healthy", ActiveConnections: 1, TotalConnections: 1}},
			[]string{"POOL BACKEND STATE ACTIVE TOTAL REPORTED", "app a:1 healthy 2 5 7", "app b:1 healthy 1 1 -"}},
		{"inherited", []admin.BackendStatus{{Pool: "app", Address: "a:1", State: "draining", InheritedConnections: 3}},
			[]string{"POOL BACKEND STATE ACTIVE TOTAL INHERITED", "app a:1 draining 0 0 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			writeStatus(&b, tc.backends)
			var got []string
			for l := range strings.Lines(b.String()) {
				got = append(got, strings.Join(strings.Fields(l), " "))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("writeStatus:\n%s\nwant rows %q", b.String(), tc.want)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// echoServer is the test's stand-in for wsgate-backend's /ws: every message
// comes back with the same type; gorilla answers close frames.
type echoServer struct {
	wssURL, wsURL string
	caFile        string
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	var up websocket.Upgrader
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})
	tlsSrv := httptest.NewUnstartedServer(h)
	// Runs that stop abandon nothing, but a test that fails half-way may.
	tlsSrv.Config.ErrorLog = log.New(io.Discard, "", 0)
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})
	if err := os.WriteFile(caFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return &echoServer{
		wssURL: "wss" + strings.TrimPrefix(tlsSrv.URL, "https") + "/ws",
		wsURL:  "ws" + strings.TrimPrefix(plain.URL, "http") + "/ws",
		caFile: caFile,
	}
}

// runJSON runs wsgate-bench with -json -quiet and returns the parsed
// result, the exit code and the human summary.
func runJSON(t *testing.T, ctx context.Context, args ...string) (Result, int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, append(args, "-json", "-quiet"), &stdout, &stderr)
	out := stdout.String()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("stdout is not one line:\n%s\nstderr:\n%s", out, stderr.String())
	}
	var r Result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("stdout is not a JSON result: %v\n%s", err, out)
	}
	return r, code, stderr.String()
}

func checkLatency(t *testing.T, l *Latency) {
	t.Helper()
	if l == nil {
		t.Fatalf("lat_us missing")
	}
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
		t.Errorf("lat_us = %+v, want 0 < p50 <= p90 <= p99 <= p999 <= max", *l)
	}
}

// TestModes runs every mode end to end. The runs are sequential and the
// test is not parallel: under -race on a small machine, TLS handshakes
// running alongside would starve a 300ms measuring window.
func TestModes(t *testing.T) {
	srv := newEchoServer(t)
	pid := strconv.Itoa(os.Getpid())
	short := []string{"-duration", "300ms", "-warmup", "100ms"}
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, r Result)
	}{
		{
			name: "rtt over TLS",
			args: append([]string{"-url", srv.wssURL, "-ca", srv.caFile, "-server-name", "127.0.0.1", "-mode", "rtt", "-c", "4", "-size", "100", "-pid", pid, "-label", "direct"}, short...),
			check: func(t *testing.T, r Result) {
				if r.Messages <= 0 || r.MsgsPerS <= 0 {
					t.Errorf("messages = %d, msgs_per_s = %v, want > 0", r.Messages, r.MsgsPerS)
				}
				checkLatency(t, r.Latency)
				if r.Proc == nil || r.Proc.CPUUsPerMsg <= 0 || r.Proc.RSSKB <= 0 || len(r.Proc.PIDs) != 1 {
					t.Errorf("proc = %+v, want cpu_us_per_msg and rss_kb > 0", r.Proc)
				} else if r.Proc.CPUSysS < 0 || r.Proc.CPUSysS > r.Proc.CPUS {
					t.Errorf("proc: cpu_sys_s = %v, want within cpu_s = %v", r.Proc.CPUSysS, r.Proc.CPUS)
				}
				if r.Label != "direct" || r.Conns != 4 || r.Size != 100 {
					t.Errorf("label, conns, size = %q, %d, %d, want direct, 4, 100", r.Label, r.Conns, r.Size)
				}
			},
		},
		{
			name: "rtt plain, tiny messages",
			args: append([]string{"-url", srv.wsURL, "-mode", "rtt", "-c", "2", "-size", "3"}, short...),
			check: func(t *testing.T, r Result) {
				if r.Messages <= 0 {
					t.Errorf("messages = %d, want > 0", r.Messages)
				}
				checkLatency(t, r.Latency)
				if r.Proc != nil {
					t.Errorf("proc = %+v without -pid, want none", r.Proc)
				}
			},
		},
		{
			name: "throughput",
			args: append([]string{"-url", srv.wssURL, "-insecure", "-mode", "throughput", "-c", "3", "-window", "8", "-size", "1000", "-pid", pid}, short...),
			check: func(t *testing.T, r Result) {
				if r.Messages <= 0 || r.MsgsPerS <= 0 || r.MBPerS <= 0 {
					t.Errorf("messages, msgs_per_s, mb_per_s = %d, %v, %v, want > 0", r.Messages, r.MsgsPerS, r.MBPerS)
				}
				if want := r.MsgsPerS * 1000 / 1e6; r.MBPerS < want*0.99 || r.MBPerS > want*1.01 {
					t.Errorf("mb_per_s = %v, want msgs_per_s*size/1e6 = %v", r.MBPerS, want)
				}
				if r.Window != 8 || r.Latency != nil {
					t.Errorf("window = %d, lat_us = %v, want 8 and none", r.Window, r.Latency)
				}
				if r.Proc == nil || r.Proc.CPUUsPerMsg <= 0 {
					t.Errorf("proc = %+v, want cpu_us_per_msg > 0", r.Proc)
				}
			},
		},
		{
			name: "connrate",
			args: append([]string{"-url", srv.wssURL, "-ca", srv.caFile, "-mode", "connrate", "-c", "2", "-pid", pid}, short...),
			check: func(t *testing.T, r Result) {
				if r.Handshakes <= 0 || r.HandshakesPerS <= 0 || r.Messages != 0 {
					t.Errorf("handshakes, handshakes_per_s, messages = %d, %v, %d, want > 0, > 0, 0", r.Handshakes, r.HandshakesPerS, r.Messages)
				}
				checkLatency(t, r.Latency)
				if r.Proc == nil || r.Proc.CPUUsPerHandshake <= 0 {
					t.Errorf("proc = %+v, want cpu_us_per_handshake > 0", r.Proc)
				}
			},
		},
		{
			name: "connrate -resume",
			args: append([]string{"-url", srv.wssURL, "-ca", srv.caFile, "-mode", "connrate", "-c", "2", "-resume"}, short...),
			check: func(t *testing.T, r Result) {
				// The warm-up's first handshakes are full; every measured one
				// resumes a session.
				if r.Handshakes <= 0 || r.Resumed != r.Handshakes {
					t.Errorf("handshakes, resumed = %d, %d, want every measured handshake resumed", r.Handshakes, r.Resumed)
				}
			},
		},
		{
			name: "connrate -n",
			args: []string{"-url", srv.wsURL, "-mode", "connrate", "-c", "3", "-n", "25", "-warmup", "0s", "-duration", "5s"},
			check: func(t *testing.T, r Result) {
				if r.Handshakes != 25 {
					t.Errorf("handshakes = %d, want 25", r.Handshakes)
				}
				if r.DurationS >= 5 {
					t.Errorf("duration_s = %v, want -n to end the run early", r.DurationS)
				}
			},
		},
		{
			name: "idle",
			args: []string{"-url", srv.wssURL, "-insecure", "-mode", "idle", "-c", "50", "-duration", "300ms", "-pid", pid},
			check: func(t *testing.T, r Result) {
				id := r.Idle
				if id == nil {
					t.Fatalf("idle missing")
				}
				if id.Target != 50 || id.Opened != 50 || id.Failed != 0 {
					t.Errorf("idle = %+v, want 50 of 50 opened", *id)
				}
				if id.RSSBeforeKB == nil || id.RSSAfterKB == nil || id.RSSPerConnBytes == nil || *id.RSSBeforeKB <= 0 {
					t.Errorf("idle rss fields = %v %v %v, want all present", id.RSSBeforeKB, id.RSSAfterKB, id.RSSPerConnBytes)
				}
				if r.DurationS < 0.29 || r.Messages != 0 || r.Latency != nil {
					t.Errorf("duration_s, messages, lat_us = %v, %d, %v, want 0.3, 0, none", r.DurationS, r.Messages, r.Latency)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, code, summary := runJSON(t, context.Background(), tc.args...)
			if code != 0 {
				t.Errorf("exit code %d, want 0", code)
			}
			if r.Errors != 0 {
				t.Errorf("errors = %d, want 0; summary:\n%s", r.Errors, summary)
			}
			if r.GoVersion == "" {
				t.Errorf("go_version empty")
			}
			if _, err := time.Parse(time.RFC3339, r.StartedAt); err != nil {
				t.Errorf("started_at %q: %v", r.StartedAt, err)
			}
			tc.check(t, r)
			if t.Failed() {
				t.Logf("summary:\n%s", summary)
			}
		})
	}
}

// TestInterrupt cancels the run (as Ctrl-C does) and wants what was
// measured, promptly.
func TestInterrupt(t *testing.T) {
	srv := newEchoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	r, code, summary := runJSON(t, ctx, "-url", srv.wsURL, "-mode", "throughput", "-c", "2", "-warmup", "100ms", "-duration", "30s")
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("run took %v after the interrupt, want it bounded", took)
	}
	if code != 0 || r.Messages <= 0 || r.DurationS > 1 {
		t.Errorf("exit %d, messages %d, duration_s %v, want 0, > 0, about 0.3", code, r.Messages, r.DurationS)
	}
	if !strings.Contains(summary, "interrupted") {
		t.Errorf("summary does not mention the interrupt:\n%s", summary)
	}
}

// TestErrorsCounted runs against a port nobody listens on.
func TestErrorsCounted(t *testing.T) {
	r, code, summary := runJSON(t, context.Background(), "-url", "ws://127.0.0.1:1/ws", "-mode", "rtt", "-c", "2", "-warmup", "0s", "-duration", "200ms")
	if code != 1 || r.Errors == 0 || r.Messages != 0 {
		t.Errorf("exit %d, errors %d, messages %d, want 1, > 0, 0", code, r.Errors, r.Messages)
	}
	if !strings.Contains(summary, "first dial error") {
		t.Errorf("summary does not show the dial error:\n%s", summary)
	}
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		{"-mode", "bogus"},
		{"-url", "http://127.0.0.1/ws"},
		{"-c", "0"},
		{"-insecure", "-ca", "x.pem"},
		{"-mode", "rtt", "-n", "5"},
		{"-mode", "idle", "-warmup", "1s"},
		{"-source-ips", "127.0.0.9-127.0.0.1"},
		{"-pid", "abc"},
		{"extra"},
	}
	for _, args := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2; stderr:\n%s", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &stdout, &stderr); code != 0 || !strings.Contains(stderr.String(), "-source-ips") {
		t.Errorf("run(-h) = %d, want 0 and the flags; stderr:\n%s", code, stderr.String())
	}
}

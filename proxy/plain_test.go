package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/proctest"
)

// truncatingBackend answers every request with a body shorter than its
// Content-Length, then drops the connection.
func truncatingBackend(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "short")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	srv.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestPlainRequestRecord(t *testing.T) {
	ok := newTestBackend(t, "ok")
	for _, tc := range []struct {
		name    string
		backend string
		method  string
		status  int  // the client sees
		aborted bool // the client gets no complete response
	}{
		{"get", ok.addr, "GET", 200, false},
		{"post", ok.addr, "POST", 200, false},
		{"backend refuses", refusingAddr(t), "GET", 502, false},
		{"body cut short", truncatingBackend(t), "GET", 200, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs proctest.SyncBuffer
			p := startProxyWith(t, Options{}, func(h *Handler) {
				h.log = slog.New(slog.NewJSONHandler(&logs, nil))
			}, backendSpec{addr: tc.backend})
			req, err := http.NewRequest(tc.method, "https://"+p.addr+"/some/path?q=secret", strings.NewReader("body"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := p.httpClient().Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			switch {
			case tc.aborted && err == nil:
				t.Fatalf("%s = %d, complete; want an incomplete response", tc.method, resp.StatusCode)
			case !tc.aborted && err != nil:
				t.Fatal(err)
			case !tc.aborted && resp.StatusCode != tc.status:
				t.Fatalf("%s = %d, want %d", tc.method, resp.StatusCode, tc.status)
			}

			var records []map[string]any
			proctest.WaitFor(t, "the request's record", func() bool {
				records = recordsWithMsg(t, logs.String(), "http request")
				return len(records) > 0
			})
			if len(records) != 1 {
				t.Fatalf("%d records of the request, want 1:\n%s", len(records), logs.String())
			}
			rec := records[0]
			want := map[string]any{"level": "INFO", "method": tc.method, "path": "/some/path", "status": float64(tc.status), "pool": "app"}
			for k, v := range want {
				if rec[k] != v {
					t.Errorf("record[%q] = %v, want %v", k, rec[k], v)
				}
			}
			if aborted := rec["aborted"] == true; aborted != tc.aborted {
				t.Errorf("record aborted = %v, want %v", rec["aborted"], tc.aborted)
			}
			if host, _ := rec["host"].(string); !strings.HasPrefix(host, "127.0.0.1:") {
				t.Errorf("record host = %v, want the request's Host", rec["host"])
			}
			if addr, _ := rec["remote_addr"].(string); !strings.HasPrefix(addr, "127.0.0.1:") {
				t.Errorf("record remote_addr = %v, want the client's address", rec["remote_addr"])
			}
			if d, _ := rec["duration"].(float64); d <= 0 || time.Duration(d) > 5*time.Second {
				t.Errorf("record duration = %v, want > 0 and short", rec["duration"])
			}
		})
	}
}

// TestNoPlainRecordForTunnels: a WebSocket tunnel has its own record.
func TestNoPlainRecordForTunnels(t *testing.T) {
	b := newTestBackend(t, "b")
	var logs proctest.SyncBuffer
	p := startProxyWith(t, Options{}, func(h *Handler) {
		h.log = slog.New(slog.NewJSONHandler(&logs, nil))
	}, backendSpec{addr: b.addr})
	c, _ := p.dial(t, "/ws", nil)
	c.Close()
	proctest.WaitFor(t, "the tunnel's record", func() bool { return len(recordsWithMsg(t, logs.String(), "tunnel closed")) == 1 })
	if n := len(recordsWithMsg(t, logs.String(), "http request")); n != 0 {
		t.Errorf("%d plain request records for a tunnel, want 0", n)
	}
}

// recordsWithMsg parses JSON log lines and returns those with message msg.
func recordsWithMsg(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

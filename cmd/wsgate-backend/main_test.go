package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/wsgate/wsgate/internal/proctest"
)

// binary is the wsgate-backend executable built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wsgate-backend-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins, err := proctest.Build(dir, ".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	binary = bins[0]
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return code
}

// ioTimeout bounds every wait in these tests.
const ioTimeout = 10 * time.Second

// process is a running wsgate-backend.
type process struct {
	*proctest.Proc
	addr string // as printed on "listening on ADDR"
}

// startProcess runs wsgate-backend with args and waits for its
// "listening on ADDR" line. The test's cleanup kills it if still running.
func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{Proc: proctest.Start(t, binary, args...)}
	p.addr = p.WaitLine("listening on ")
	return p
}

// exitCode maps a finished command's error to its exit code.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("wsgate-backend: %v", err)
		return -1
	}
}

func closeCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

func TestSignalDrains(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		sig  os.Signal
	}{
		{name: "SIGTERM", sig: syscall.SIGTERM},
		{name: "SIGINT", sig: syscall.SIGINT},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startProcess(t, "-listen", "127.0.0.1:0", "-drain-timeout", "5s")

			var clients []*websocket.Conn
			for i, path := range []string{"/ws", "/ws", "/ws/chat?room=r"} {
				d := &websocket.Dialer{HandshakeTimeout: ioTimeout}
				c, resp, err := d.Dial("ws://"+p.addr+path, nil)
				if err != nil {
					t.Fatalf("client %d: Dial(%s) = %v, want success", i, path, err)
				}
				t.Cleanup(func() { c.Close() })
				if got := resp.Header.Get("X-Backend-Id"); got != p.addr {
					t.Errorf("client %d: X-Backend-Id = %q, want the listen address %q", i, got, p.addr)
				}
				c.SetWriteDeadline(time.Now().Add(ioTimeout))
				c.SetReadDeadline(time.Now().Add(ioTimeout))
				if err := c.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
					t.Fatalf("client %d: WriteMessage() = %v", i, err)
				}
				if _, got, err := c.ReadMessage(); err != nil || string(got) != "ping" {
					t.Fatalf("client %d: ReadMessage() = %q, %v, want %q", i, got, err, "ping")
				}
				clients = append(clients, c)
			}

			if err := p.Cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			for i, c := range clients {
				c.SetReadDeadline(time.Now().Add(ioTimeout))
				_, _, err := c.ReadMessage()
				if got := closeCode(err); got != websocket.CloseGoingAway {
					t.Errorf("client %d: ReadMessage() after %s = %v, want close %d", i, tc.name, err, websocket.CloseGoingAway)
				}
			}
			if code := p.Exit(ioTimeout); code != 0 {
				t.Errorf("exit code = %d, want 0\nstderr:\n%s", code, p.Stderr.String())
			}
		})
	}
}

func TestUnixSocketListen(t *testing.T) {
	t.Parallel()
	dir := proctest.SocketDir(t)
	path := filepath.Join(dir, "b.sock")

	// Leave a stale socket file behind, as a crashed process would.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	p := startProcess(t, "-listen", "unix:"+path)
	if want := "unix:" + path; p.addr != want {
		t.Errorf("listening on %q, want %q", p.addr, want)
	}
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	resp, err := (&http.Client{Transport: tr, Timeout: ioTimeout}).Get("http://backend/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over %s: %v", path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "OK" {
		t.Errorf("GET /healthz = %d %q, want 200 \"OK\"", resp.StatusCode, body)
	}

	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.Exit(ioTimeout); code != 0 {
		t.Errorf("exit code = %d, want 0\nstderr:\n%s", code, p.Stderr.String())
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after exit: Lstat() = %v, want it removed", err)
	}
}

func TestStartupErrors(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() })

	dir := proctest.SocketDir(t)
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	liveSock := filepath.Join(dir, "live.sock")
	live, err := net.Listen("unix", liveSock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Close() })
	go func() { // accept and drop, so the liveness probe connects
		for {
			c, err := live.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	// Runs after the parallel subtests, before the listener closes.
	t.Cleanup(func() {
		if _, err := os.Lstat(liveSock); err != nil {
			t.Errorf("live socket after the refused start: Lstat() = %v, want it kept", err)
		}
	})

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{name: "busy port", args: []string{"-listen", busy.Addr().String()}, wantCode: 1, wantStderr: "address already in use"},
		{name: "live unix socket", args: []string{"-listen", "unix:" + liveSock}, wantCode: 1, wantStderr: "address already in use"},
		{name: "unix path not a socket", args: []string{"-listen", "unix:" + regular}, wantCode: 1, wantStderr: "not a socket"},
		{name: "unknown flag", args: []string{"-nope"}, wantCode: 2, wantStderr: "flag provided but not defined: -nope"},
		{name: "zero max message", args: []string{"-max-message", "0"}, wantCode: 2, wantStderr: "-max-message 0: must be positive"},
		{name: "negative drain timeout", args: []string{"-drain-timeout", "-1s"}, wantCode: 2, wantStderr: "-drain-timeout -1s: must be positive"},
		{name: "stray argument", args: []string{"extra"}, wantCode: 2, wantStderr: "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, tc.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			code := exitCode(t, cmd.Run())
			if code != tc.wantCode {
				t.Errorf("exit code = %d, want %d\nstderr:\n%s", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tc.wantStderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}

// /healthz carries X-Backend-Connections unless -report-load=false.
func TestReportLoadFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"0"}},
		{[]string{"-report-load=false"}, nil},
	} {
		p := startProcess(t, append([]string{"-listen", "127.0.0.1:0"}, tc.args...)...)
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: ioTimeout}
		resp, err := c.Get("http://" + p.addr + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Values("X-Backend-Connections"); !slices.Equal(got, tc.want) {
			t.Errorf("wsgate-backend %q: X-Backend-Connections = %q, want %q", tc.args, got, tc.want)
		}
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/proctest"
)

// pythonWithWebsockets returns a python3 that can import websockets
// (Debian's python3-websockets, which .ci/run installs). Outside CI the
// tests that need it skip when there is none.
func pythonWithWebsockets(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(py)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import websockets").Run() == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no python3 with websockets; .ci/run installs python3-websockets")
	}
	t.Skip("no python3 with the websockets package (apt-get install python3-websockets)")
	return ""
}

func TestPythonBackendsBehindWsgate(t *testing.T) {
	py := pythonWithWebsockets(t)
	server := filepath.Join("testdata", "python", "echo_server.py")
	a := start(t, py, server, "py-a")
	addrA := a.WaitLine("listening on")
	addrB := start(t, py, server, "py-b").WaitLine("listening on")
	g := startGate(t, []string{addrA, addrB}, "")
	// websockets closes its connections with 1001 when it shuts down; the
	// code passes through wsgate unchanged.
	backendShutdownReachesClients(t, g, a, "py-a", "py-b")
}

func TestPythonClientRetriesThrough503(t *testing.T) {
	py := pythonWithWebsockets(t)
	// The pool's only backend is not up yet: wsgate answers 503, which the
	// websockets client treats as a reason to retry.
	addr := refusingAddr(t)
	g := startGate(t, []string{addr}, "")
	client := start(t, py, filepath.Join("testdata", "python", "client.py"), "wss://"+g.proxyAddr+"/ws", g.certFile)
	waitFor(t, "the first refusal", func() bool { return strings.Contains(g.Stderr.String(), "no backend for upgrade") })
	start(t, backendBin, "-listen", addr, "-id", "late", noLoadReport).WaitLine("listening on")

	if got := client.WaitLine("echo:"); got != "hello from python" {
		t.Errorf("python client got %q, want its message echoed", got)
	}
	if code := client.Exit(30 * time.Second); code != 0 {
		t.Errorf("python client exit code = %d, want 0", code)
	}
}

// refusingAddr returns a loopback address where nothing listens.
func refusingAddr(t *testing.T) string { return proctest.UnusedAddr(t) }

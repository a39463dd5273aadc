// Command wsgate-backend runs wsgate's reference WebSocket backend: echo at
// /ws, chat at /ws/chat?room=R, health at /healthz, whose answers carry the
// open WebSocket connections as X-Backend-Connections (unless
// -report-load=false). On SIGTERM or SIGINT it drains (health 503, close
// code 1001 to every client, wait for their close frames up to
// -drain-timeout) and exits 0.
//
// Usage:
//
//	wsgate-backend [-listen 127.0.0.1:9001 | -listen unix:/path.sock] [-id NAME]
//	               [-drain-timeout 10s] [-max-message 1048576] [-report-load=false]
//
// Once listening it prints "listening on ADDR" with the real address, so
// "-listen 127.0.0.1:0" picks a free port that scripts can read back.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/backend"
)

const (
	name       = "wsgate-backend"
	unixPrefix = "unix:"
	keyErr     = "err"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code. 0 after a
// clean drain, 1 when it cannot listen or serve, 2 for bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet(name, flag.ContinueOnError)
	flags.SetOutput(stderr)
	listen := flags.String("listen", "127.0.0.1:9001", "`address` to listen on: host:port, or unix:/path/to.sock")
	id := flags.String("id", "", "backend `name` sent as X-Backend-Id on every 101 response (default: the listen address)")
	drainTimeout := flags.Duration("drain-timeout", backend.DefaultDrainTimeout, "on SIGTERM, how long to wait for clients to answer the 1001 close")
	maxMessage := flags.Int64("max-message", backend.DefaultMaxMessage, "largest message a client may send, in `bytes`; bigger ones get close 1009")
	reportLoad := flags.Bool("report-load", true, "send the open connections as X-Backend-Connections in /healthz answers")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var bad []string
	if flags.NArg() > 0 {
		bad = append(bad, fmt.Sprintf("unexpected arguments %q", flags.Args()))
	}
	if *drainTimeout <= 0 {
		bad = append(bad, fmt.Sprintf("-drain-timeout %s: must be positive", *drainTimeout))
	}
	if *maxMessage <= 0 {
		bad = append(bad, fmt.Sprintf("-max-message %d: must be positive", *maxMessage))
	}
	if len(bad) > 0 {
		for _, msg := range bad {
			fmt.Fprintf(stderr, "%s: %s\n", name, msg)
		}
		return 2
	}

	ln, addr, err := listenOn(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	defer ln.Close() // Serve closes it too; this covers the unix socket file on early return

	if *id == "" {
		*id = addr
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	srv := backend.New(backend.Options{
		ID:           *id,
		MaxMessage:   *maxMessage,
		DrainTimeout: *drainTimeout,
		NoLoadReport: !*reportLoad,
		Logger:       logger,
	})
	fmt.Fprintf(stdout, "listening on %s\n", addr)
	if err := srv.Serve(ctx, ln); err != nil {
		logger.Error("serve", slog.Any(keyErr, err))
		return 1
	}
	return 0
}

// listenOn listens on a host:port or on unix:/path. It returns the listener
// and its real address in the same notation, so port 0 reads back resolved.
func listenOn(addr string) (net.Listener, string, error) {
	path, ok := strings.CutPrefix(addr, unixPrefix)
	if !ok {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, "", fmt.Errorf("listen on %s: address already in use (is another server running there? pick another with -listen)", addr)
			}
			return nil, "", fmt.Errorf("listen on %s: %w", addr, err)
		}
		return ln, ln.Addr().String(), nil
	}

	if path == "" {
		return nil, "", errors.New("listen on unix: empty socket path")
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, "", fmt.Errorf("listen on %s: %w", addr, err)
	}
	// Remove the socket file when the listener closes (Serve closes it on
	// exit). This is already the default for listeners from net.Listen;
	// it is spelled out because the contract depends on it.
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, unixPrefix + path, nil
}

// removeStaleSocket removes a socket file left behind by a process that did
// not exit cleanly. A socket that still accepts connections belongs to a live
// server and is left alone, as is anything that is not a socket.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen on %s%s: %w", unixPrefix, path, err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("listen on %s%s: file exists and is not a socket", unixPrefix, path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("listen on %s%s: address already in use (is another server running there? pick another with -listen)", unixPrefix, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

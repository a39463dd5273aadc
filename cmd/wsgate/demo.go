package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/healthcheck"
	"github.com/wsgate/wsgate/proxy"
	"github.com/wsgate/wsgate/registry"
	wstls "github.com/wsgate/wsgate/tls"
)

// demoCmd runs wsgate on an embedded configuration: a self-signed
// certificate made in memory, three reference backends in-process on
// loopback, the proxy and the admin listener.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsgate demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8443", "TLS listener address")
	adminListen := fs.String("admin", "127.0.0.1:9090", "admin listener address")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintln(stderr, "wsgate demo:", err)
		return 2
	}

	certPEM, keyPEM, err := wstls.GenerateSelfSigned([]string{"localhost", "127.0.0.1", "::1"}, 30*24*time.Hour)
	if err != nil {
		fmt.Fprintln(stderr, "wsgate demo:", err)
		return 1
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		fmt.Fprintln(stderr, "wsgate demo:", err)
		return 1
	}

	// Three reference backends on loopback ports the kernel picks.
	backendCtx, stopBackends := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopBackends(); wg.Wait() }()
	check := new(healthcheck.DefaultCheck())
	pool := registry.PoolSpec{Name: "echo", Check: check}
	for i := 1; i <= 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(stderr, "wsgate demo: listen (backend):", err)
			return 1
		}
		id := fmt.Sprintf("backend-%d", i)
		srv := backend.New(backend.Options{ID: id, Logger: log})
		wg.Go(func() { _ = srv.Serve(backendCtx, ln) })
		pool.Backends = append(pool.Backends, registry.BackendSpec{Address: ln.Addr().String(), Weight: registry.DefaultWeight})
	}

	cfg := &config.Config{
		Path:   "(demo)",
		Listen: *listen,
		Admin:  config.Admin{Listen: *adminListen},
		// A chat room lives in one backend process, so the chat route goes
		// to a pool of one; echo is balanced over all three.
		Pools: []registry.PoolSpec{pool, {
			Name:     "chat",
			Backends: pool.Backends[:1],
			Check:    check,
		}},
		Routes: []proxy.Route{
			{PathPrefix: "/ws/chat", Pool: "chat"},
			{PathPrefix: "/", Pool: "echo"},
		},
		Shutdown: config.Shutdown{
			DrainTimeout: 3 * time.Second,
		},
		Limits: config.Limits{
			MaxHeaderBytes: proxy.DefaultMaxHeaderBytes,
			HeaderTimeout:  proxy.DefaultHeaderTimeout,
			DialTimeout:    proxy.DefaultDialTimeout,
			MaxAttempts:    proxy.DefaultMaxAttempts,
		},
	}
	lns, err := openListeners(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "wsgate demo:", err)
		return 1
	}
	defer lns.Close()
	g, err := newGateway(cfg, lns, []tls.Certificate{pair}, log)
	if err != nil {
		fmt.Fprintln(stderr, "wsgate demo:", err)
		return 1
	}

	host := g.proxyLn.Addr().String()
	fmt.Fprintf(stdout, `wsgate demo is running (Ctrl-C to stop)

  echo        wss://%[1]s/ws
  chat        wss://%[1]s/ws/chat?room=lobby
  dashboard   %[2]s/
  backends    %[2]s/api/backends
  health      %[2]s/healthz

Three reference backends run in-process; /ws is balanced over all of
them, /ws/chat goes to the first (a room lives in one process):
`, host, g.adminURL())
	for _, b := range pool.Backends {
		fmt.Fprintf(stdout, "  %s\n", b.Address)
	}
	fmt.Fprintf(stdout, `
The certificate is self-signed and made at start-up, so tell the client
not to verify it, e.g.:
  websocat -k wss://%[1]s/ws
  python3 -c 'import ssl,asyncio,websockets as w;c=ssl.create_default_context();c.check_hostname=False;c.verify_mode=ssl.CERT_NONE
async def m():
  async with w.connect("wss://%[1]s/ws",ssl=c) as s: await s.send("hi"); print(await s.recv())
asyncio.run(m())'
`, host)

	if err := g.serve(ctx, nil); err != nil {
		log.Error("stopped", slog.Any("err", err))
		return 1
	}
	return 0
}

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"text/template"
	"time"

	"github.com/wsgate/wsgate/backend"
	"github.com/wsgate/wsgate/config"
	wstls "github.com/wsgate/wsgate/tls"
)

// demoYAML is the demo's configuration, a text/template of demoAddrs.
//
//go:embed demo.yaml
var demoYAML string

// demoAddrs are the addresses filled into demoYAML.
type demoAddrs struct {
	Listen, Admin string
	Backends      []string
}

// demoConfig renders demoYAML with addrs and parses it as a file would be,
// with opts (cert as its certificate).
func demoConfig(addrs demoAddrs, cert tls.Certificate) (*config.Config, config.Options, error) {
	tmpl, err := template.New("demo.yaml").Option("missingkey=error").Funcs(template.FuncMap{
		// A JSON string is a YAML double-quoted scalar.
		"quote": func(s string) (string, error) {
			b, err := json.Marshal(s)
			return string(b), err
		},
	}).Parse(demoYAML)
	opts := config.Options{Certificates: []tls.Certificate{cert}}
	if err != nil {
		return nil, opts, err
	}
	var doc bytes.Buffer
	if err := tmpl.Execute(&doc, addrs); err != nil {
		return nil, opts, err
	}
	cfg, err := opts.Parse("(demo)", doc.Bytes())
	return cfg, opts, err
}

// demoCmd runs wsgate on an embedded configuration: a self-signed
// certificate made in memory, three reference backends in-process on
// loopback, the proxy and the admin listener.
func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsgate demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := demoAddrs{}
	fs.StringVar(&addrs.Listen, "listen", "127.0.0.1:8443", "TLS listener address")
	fs.StringVar(&addrs.Admin, "admin", config.DefaultAdminListen, "admin listener address")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", config.DefaultLogFormat, "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log, err := newLogger(stderr, *level, *format)
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
	for i := 1; i <= 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(stderr, "wsgate demo: listen (backend):", err)
			return 1
		}
		srv := backend.New(backend.Options{ID: fmt.Sprintf("backend-%d", i), Logger: log})
		wg.Go(func() { _ = srv.Serve(backendCtx, ln) })
		addrs.Backends = append(addrs.Backends, ln.Addr().String())
	}

	cfg, opts, err := demoConfig(addrs, pair)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	g, lns, err := openGateway(ctx, cfg, opts, log)
	if err != nil {
		fmt.Fprintln(stderr, "wsgate demo:", err)
		return 1
	}
	defer lns.Close()

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
	for _, addr := range addrs.Backends {
		fmt.Fprintf(stdout, "  %s\n", addr)
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

	if err := g.serve(ctx, control{}); err != nil {
		log.Error("stopped", slog.Any(keyErr, err))
		return 1
	}
	return 0
}

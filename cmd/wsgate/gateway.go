package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/wsgate/wsgate/admin"
	"github.com/wsgate/wsgate/balancer"
	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/discovery"
	"github.com/wsgate/wsgate/healthcheck"
	"github.com/wsgate/wsgate/internal/gcpolicy"
	"github.com/wsgate/wsgate/listener"
	"github.com/wsgate/wsgate/metrics"
	"github.com/wsgate/wsgate/proxy"
	"github.com/wsgate/wsgate/registry"
	wstls "github.com/wsgate/wsgate/tls"
	"github.com/wsgate/wsgate/upgrade"
)

// Log attribute keys of wsgate's own lines, as listed under "Every key" in
// the README.
const (
	keyFile = "file"
	// The garbage collector's policy (logGCPolicy).
	keyGCPercent           = "gc_percent"
	keyGCPercentFrom       = "gc_percent_from"
	keyGOGC                = "gogc"
	keyMemoryLimit         = "memory_limit"
	keyMemoryLimitFrom     = "memory_limit_from"
	keyGOMEMLIMIT          = "gomemlimit"
	keyMemoryAvailable     = "memory_available"
	keyMemoryAvailableFrom = "memory_available_from"
	keyGeneration          = "generation"
	keyPools               = "pools"
	keyRoutes              = "routes"
	keyAdminToken          = "admin_token"
	keySharedSecret        = "shared_secret"
	keyListener            = "listener"
	keyListenAddr          = "listen_addr"
	keyFrom                = "from"
	keyTrustedCIDRs        = "trusted_cidrs"
	keyDrainTimeout        = "drain_timeout"
	keyUpgradeTimeout      = "upgrade_timeout"
	keyMaxConnections      = "max_connections"
	keyMaxConnectionsPerIP = "max_connections_per_ip"
	keyHandshakeRatePerIP  = "handshake_rate_per_ip"
	keyMaxMessageBytes     = "max_message_bytes"
	keyFDLimit             = "fd_limit"
	keySource              = "source"
	keyConnections         = "connections"
	keyDuration            = "duration"
	keyPID                 = "pid"
	keyOldPID              = "old_pid"
	keyNewPID              = "new_pid"
	keyErr                 = "err"
)

// gateway is one running wsgate: the registry, balancer, TLS provider,
// proxy and admin handlers assembled from a config, serving on listeners
// its caller opened and owns (see openGateway).
type gateway struct {
	cfg   *config.Config
	opts  config.Options // cfg was read with them, and reloads are
	log   *slog.Logger
	store *registry.Store
	bal   *balancer.Balancer
	check *healthcheck.Checker
	disc  *discovery.Discoverer
	certs *wstls.Provider
	proxy *proxy.Handler
	admin *admin.Server
	stats *metrics.Metrics
	// accept is the proxy's accept path over proxyLn.
	accept *proxy.Listener
	// gc is the garbage collector's policy (the runtime section).
	gc *gcpolicy.Tuner

	proxyLn, adminLn net.Listener
	httpLn           net.Listener // nil without tls.http_listen
	// lns is the listeners' set, handed to a new process on SIGUSR2; nil
	// in the demo.
	lns *listener.Set
	// predecessor, when this process was started by a binary upgrade, is
	// closed once the old process is gone; stopReport, once this process
	// has handed over, stops telling its successor what it holds.
	predecessor chan struct{}
	stopReport  func()
	// adminPause and httpPause stop the admin and HTTP listeners from
	// accepting at a hand-over; newConns counts the connections of all
	// three servers that have not read a request yet.
	adminPause, httpPause *pausable
	newConns              newConns
}

// newGateway assembles a gateway from cfg, read with opts, that serves on
// lns, the listeners of listenSpecs(cfg). It starts no goroutine.
func newGateway(cfg *config.Config, opts config.Options, lns *listener.Set, log *slog.Logger) (*gateway, error) {
	g := &gateway{cfg: cfg, opts: opts, log: log, proxyLn: lns.Get(listener.TLS), adminLn: lns.Get(listener.Admin), httpLn: lns.Get(listener.HTTP)}
	if g.proxyLn == nil || g.adminLn == nil || (g.httpLn == nil) != (cfg.TLS.HTTPListen == "") {
		return nil, errors.New("the listeners are not those of the configuration")
	}
	g.gc = gcpolicy.NewTuner(gcpolicy.OSEnv())
	applied, err := g.gc.Apply(cfg.Runtime)
	if err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	logGCPolicy(log, applied)
	if g.store, err = registry.New(); err != nil {
		return nil, err
	}
	gen, err := g.store.Apply(cfg.Pools)
	if err != nil {
		return nil, err
	}
	g.bal = balancer.New(g.store, balancer.Options{Logger: log})
	g.stats = metrics.New(metrics.Options{Store: g.store, Balancer: g.bal})
	g.check = healthcheck.New(g.store, healthcheck.Options{Observer: g.stats, Load: g.bal, Logger: log})
	g.disc = discovery.New(g.store, discovery.Options{Connections: g.bal, Observer: g.stats, Logger: log})

	if g.certs, err = wstls.NewProvider(tlsOptions(cfg, log)); err != nil {
		return nil, err
	}
	g.proxy = proxy.New(proxy.Options{
		Routes:         cfg.Routes,
		Balancer:       g.bal,
		Failures:       g.check,
		DialTimeout:    cfg.Limits.DialTimeout,
		MaxAttempts:    cfg.Limits.MaxAttempts,
		MaxHeaderBytes: cfg.Limits.MaxHeaderBytes,
		HeaderTimeout:  cfg.Limits.HeaderTimeout,
		Limits:         proxyLimits(cfg, log),
		Observer:       g.stats,
		Logger:         log,
	})
	// The handshake timeout bounds the accept layers (a PROXY protocol
	// header) and the TLS handshake.
	g.accept = proxy.NewListener(g.proxyLn, proxy.ListenerOptions{
		TLS:              g.certs.TLSConfig(),
		HandshakeTimeout: cfg.Limits.TLSHandshakeTimeout,
		Layers:           acceptLayers(cfg),
		Observer:         g.stats,
		Logger:           log,
	})
	g.stats.SetRelayer(g.proxy)
	g.admin = admin.New(admin.Options{
		Store:    g.store,
		Balancer: g.bal,
		Totals:   g.stats.Totals,
		Metrics:  g.stats.Handler(),
		Token:    cfg.Admin.Token,
		Pprof:    cfg.Admin.Pprof,
		Logger:   log,
	})
	for _, l := range lns.All() {
		if l.From != "" {
			log.Info("listener inherited", slog.String(keyListener, l.Name), slog.String(keyListenAddr, l.Addr().String()), slog.String(keyFrom, l.From))
		}
	}
	log.Info("config loaded", slog.String(keyFile, cfg.Path), slog.Uint64(keyGeneration, gen),
		slog.Int(keyPools, len(cfg.Pools)), slog.Int(keyRoutes, len(cfg.Routes)), slog.Bool(keyAdminToken, cfg.Admin.Token != ""))
	logProxyProtocol(log, cfg)
	return g, nil
}

// logGCPolicy says which garbage collector policy is in force, and where
// each setting came from: the config file (or its default), or the GOGC
// and GOMEMLIMIT environment variables, which win.
func logGCPolicy(log *slog.Logger, a gcpolicy.Applied) {
	attrs := []slog.Attr{slog.String(keyGCPercentFrom, string(a.GCPercentFrom))}
	if a.GCPercent == gcpolicy.Off {
		attrs = append(attrs, slog.String(keyGCPercent, "off"))
	} else {
		attrs = append(attrs, slog.Int(keyGCPercent, a.GCPercent))
	}
	if a.GCPercentFrom == gcpolicy.FromEnv {
		attrs = append(attrs, slog.String(keyGOGC, a.GOGC))
	}
	if a.MemoryLimit == math.MaxInt64 {
		attrs = append(attrs, slog.String(keyMemoryLimit, "off"))
	} else {
		attrs = append(attrs, slog.String(keyMemoryLimit, gcpolicy.FormatBytes(a.MemoryLimit)))
	}
	attrs = append(attrs, slog.String(keyMemoryLimitFrom, string(a.MemoryLimitFrom)))
	switch {
	case a.MemoryLimitFrom == gcpolicy.FromEnv:
		attrs = append(attrs, slog.String(keyGOMEMLIMIT, a.GOMEMLIMIT))
	case a.Available > 0:
		attrs = append(attrs, slog.String(keyMemoryAvailable, gcpolicy.FormatBytes(a.Available)), slog.String(keyMemoryAvailableFrom, a.AvailableFrom))
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, "gc policy", attrs...)
}

// acceptLayers are the accept layers cfg asks for: PROXY protocol from
// proxy_protocol.trusted_cidrs, or none.
func acceptLayers(cfg *config.Config) []proxy.AcceptLayer {
	if len(cfg.ProxyProtocol.TrustedCIDRs) == 0 {
		return nil
	}
	return []proxy.AcceptLayer{proxy.ProxyProtocol(cfg.ProxyProtocol.TrustedCIDRs)}
}

// logProxyProtocol says from which addresses PROXY protocol headers are
// read, if any.
func logProxyProtocol(log *slog.Logger, cfg *config.Config) {
	if cidrs := cfg.ProxyProtocol.TrustedCIDRs; len(cidrs) > 0 {
		log.Info("proxy protocol headers required", slog.Any(keyTrustedCIDRs, cidrs))
	}
}

// proxyLimits are the proxy's limits as cfg sets them.
func proxyLimits(cfg *config.Config, log *slog.Logger) proxy.Limits {
	return proxy.Limits{
		MaxConnections:      connectionLimit(cfg.Limits.MaxConnections, log),
		MaxConnectionsPerIP: cfg.Limits.MaxConnectionsPerIP,
		HandshakeRatePerIP:  cfg.Limits.HandshakeRatePerIP,
		HandshakeBurst:      cfg.Limits.HandshakeBurst,
		MaxMessageBytes:     cfg.Limits.MaxMessageBytes,
		WriteTimeout:        offIfZero(cfg.Tunnels.WriteTimeout),
		PingInterval:        cfg.Tunnels.PingInterval,
		PingTimeout:         cfg.Tunnels.PingTimeout,
		IdleTimeout:         cfg.Tunnels.IdleTimeout,
		MaxLifetime:         cfg.Tunnels.MaxLifetime,
		CloseSpread:         cfg.Shutdown.CloseSpread,
	}
}

// offIfZero maps a config duration where 0 means off to an Options one,
// where 0 means the default and a negative value off.
func offIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// listenSpecs are the listeners cfg asks for. reuse_port applies to the
// ones clients connect to, not to the admin listener, which each process
// has to itself.
func listenSpecs(cfg *config.Config) []listener.Spec {
	specs := []listener.Spec{
		{Name: listener.TLS, Address: cfg.Listen, ReusePort: cfg.ReusePort},
		{Name: listener.Admin, Address: cfg.Admin.Listen},
	}
	if cfg.TLS.HTTPListen != "" {
		specs = append(specs, listener.Spec{Name: listener.HTTP, Address: cfg.TLS.HTTPListen, ReusePort: cfg.ReusePort})
	}
	return specs
}

// openGateway opens cfg's listeners, adopting those this process
// inherited (from systemd socket activation, or handed over by the wsgate
// process that started it), and assembles a gateway on them from cfg,
// read with opts. The caller owns the listeners: it closes them when the
// gateway has served. On error nothing stays open.
func openGateway(ctx context.Context, cfg *config.Config, opts config.Options, log *slog.Logger) (*gateway, *listener.Set, error) {
	in, err := listener.Inherit()
	if err != nil {
		return nil, nil, err
	}
	lns, err := listener.Open(ctx, listenSpecs(cfg), in)
	if err != nil {
		return nil, nil, err
	}
	g, err := newGateway(cfg, opts, lns, log)
	if err != nil {
		lns.Close()
		return nil, nil, err
	}
	g.lns = lns
	return g, lns, nil
}

var (
	_ proxy.Picker             = (*balancer.Balancer)(nil)
	_ proxy.FailureReporter    = (*healthcheck.Checker)(nil)
	_ discovery.Counter        = (*balancer.Balancer)(nil)
	_ healthcheck.LoadReporter = (*balancer.Balancer)(nil)
)

// proxyURL and adminURL are the listeners' real addresses (a :0 port
// resolved).
func (g *gateway) proxyURL() string { return "https://" + g.proxyLn.Addr().String() }
func (g *gateway) adminURL() string { return "http://" + g.adminLn.Addr().String() }

// reload reads the config file again and applies it, and counts the
// outcome in wsgate_config_reloads_total.
func (g *gateway) reload() {
	g.stats.Reloaded(g.applyReload())
}

// applyReload reads the config file again and applies it: certificates,
// pools, backends, weights, health checks, DNS discovery, routes,
// proxy_protocol, the edge limits and the admin token change for new
// connections and requests (backends a pool's discovery found stay, with
// their health, while the pool discovers); established connections are
// not touched (a removed backend's connections run on until they end).
// The runtime section (the garbage collector's policy) applies at once;
// a memory limit given as a percent that cannot be resolved (no memory
// size readable) leaves the running policy, with an error logged. A
// file that fails validation, or certificates that fail to load, change
// nothing. The listeners (their addresses and reuse_port), the HTTP
// server's header limits and the
// log format are fixed at start-up: a change to them is logged and
// ignored. It reports whether the new config was applied; it logs why
// when not.
func (g *gateway) applyReload() bool {
	cfg, err := g.opts.Load(g.cfg.Path)
	if err != nil {
		g.log.Error("reload rejected; the running config stays", slog.String(keyFile, g.cfg.Path), slog.Uint64(keyGeneration, g.store.Generation()))
		var joined interface{ Unwrap() []error }
		if errors.As(err, &joined) {
			for _, e := range joined.Unwrap() {
				g.log.Error("config error", slog.Any(keyErr, e))
			}
		} else {
			g.log.Error("config error", slog.Any(keyErr, err))
		}
		return false
	}
	if err := g.certs.SetFiles(cfg.TLS.Certificates); err != nil {
		g.log.Error("reload rejected; the running config stays", slog.String(keyFile, cfg.Path), slog.Any(keyErr, err))
		return false
	}
	if cfg.Runtime != g.cfg.Runtime {
		applied, err := g.gc.Apply(cfg.Runtime)
		if err != nil {
			g.log.Error("runtime section not applied; the running gc policy stays", slog.String(keyFile, cfg.Path), slog.Any(keyErr, err))
			cfg.Runtime = g.cfg.Runtime
		} else {
			logGCPolicy(g.log, applied)
		}
	}
	gen, err := g.store.Apply(cfg.Pools)
	if err != nil {
		g.log.Error("reload rejected; the running config stays", slog.String(keyFile, cfg.Path), slog.Any(keyErr, err))
		return false
	}
	g.proxy.SetRoutes(cfg.Routes)
	g.accept.SetLayers(acceptLayers(cfg))
	if !slices.Equal(cfg.ProxyProtocol.TrustedCIDRs, g.cfg.ProxyProtocol.TrustedCIDRs) {
		logProxyProtocol(g.log, cfg)
		if len(cfg.ProxyProtocol.TrustedCIDRs) == 0 {
			g.log.Info("proxy protocol off")
		}
	}
	if cfg.Admin.Token != g.cfg.Admin.Token {
		g.admin.SetToken(cfg.Admin.Token)
		g.log.Info("admin token changed", slog.Bool(keyAdminToken, cfg.Admin.Token != ""))
	}
	g.keepRestartOnlyTLS(cfg)
	if cfg.Listen != g.cfg.Listen || cfg.ReusePort != g.cfg.ReusePort || cfg.Admin.Listen != g.cfg.Admin.Listen {
		g.log.Warn("listen addresses and reuse_port change only on restart; kept the running ones")
	}
	cfg.Listen, cfg.ReusePort, cfg.Admin.Listen = g.cfg.Listen, g.cfg.ReusePort, g.cfg.Admin.Listen
	// The HTTP server's own header limits are fixed when it starts; every
	// other limit applies from now on.
	if cfg.Limits.MaxHeaderBytes != g.cfg.Limits.MaxHeaderBytes || cfg.Limits.HeaderTimeout != g.cfg.Limits.HeaderTimeout ||
		cfg.Limits.DialTimeout != g.cfg.Limits.DialTimeout || cfg.Limits.MaxAttempts != g.cfg.Limits.MaxAttempts {
		g.log.Warn("limits.max_header_bytes, header_timeout, dial_timeout and max_attempts change only on restart; kept the running ones")
	}
	cfg.Limits.MaxHeaderBytes, cfg.Limits.HeaderTimeout = g.cfg.Limits.MaxHeaderBytes, g.cfg.Limits.HeaderTimeout
	cfg.Limits.DialTimeout, cfg.Limits.MaxAttempts = g.cfg.Limits.DialTimeout, g.cfg.Limits.MaxAttempts
	if cfg.Limits != g.cfg.Limits || cfg.Tunnels != g.cfg.Tunnels || cfg.Shutdown != g.cfg.Shutdown {
		g.proxy.SetLimits(proxyLimits(cfg, g.log))
		g.accept.SetHandshakeTimeout(cfg.Limits.TLSHandshakeTimeout)
		g.log.Info("limits changed", slog.Int(keyMaxConnectionsPerIP, cfg.Limits.MaxConnectionsPerIP),
			slog.Float64(keyHandshakeRatePerIP, cfg.Limits.HandshakeRatePerIP), slog.Int64(keyMaxMessageBytes, cfg.Limits.MaxMessageBytes))
	}
	if cfg.Log != g.cfg.Log {
		g.log.Warn("log.format changes only on restart; kept the running one")
		cfg.Log = g.cfg.Log
	}
	g.cfg = cfg
	g.log.Info("config reloaded", slog.String(keyFile, cfg.Path), slog.Uint64(keyGeneration, gen),
		slog.Int(keyPools, len(cfg.Pools)), slog.Int(keyRoutes, len(cfg.Routes)))
	return true
}

// control is how runCmd steers serve, beyond ctx (SIGTERM): nil channels
// and functions are ignored (the demo has none).
type control struct {
	reload  <-chan os.Signal // SIGHUP: reload the config file
	upgrade <-chan os.Signal // SIGUSR2: hand over to a new process
	// serving is called once the listeners serve.
	serving func()
	// successor starts the new process of a binary upgrade.
	successor func(g *gateway) (*upgrade.Child, error)
}

// serve runs the gateway until ctx is done, then shuts down: the admin
// /healthz turns 503, the TLS listener closes, tunnels are ended, and
// serve returns once everything has stopped or the drain timeout passed.
// On ctl.upgrade it starts a new process with its listeners and, once that
// serves, stops accepting and drains (see handOver).
func (g *gateway) serve(ctx context.Context, ctl control) error {
	proxySrv := g.proxy.Server()
	adminSrv := g.admin.HTTPServer()
	var httpSrv *http.Server
	if g.httpLn != nil {
		httpSrv = g.httpServer()
	}
	// The admin and HTTP listeners can pause, and every server's new
	// connections are counted, for a binary upgrade (see handover.go).
	g.adminPause = newPausable(g.adminLn)
	g.newConns.watch(proxySrv)
	g.newConns.watch(adminSrv)
	if httpSrv != nil {
		g.httpPause = newPausable(g.httpLn)
		g.newConns.watch(httpSrv)
	}
	runCtx, stopRunning := context.WithCancel(context.Background())
	defer stopRunning()

	eg, egCtx := errgroup.WithContext(runCtx)
	eg.Go(func() error { return g.bal.Run(egCtx) })
	eg.Go(func() error { return g.check.Run(egCtx) })
	eg.Go(func() error { return g.disc.Run(egCtx) })
	eg.Go(func() error { return g.stats.Run(egCtx) })
	eg.Go(func() error { return g.proxy.Run(egCtx) })
	eg.Go(func() error { return g.gc.Run(egCtx) })
	eg.Go(func() error { return g.certs.Watch(egCtx, 0) })
	eg.Go(func() error { return g.accept.Run(egCtx) })
	eg.Go(func() error { return serveErr("TLS listener", proxySrv.Serve(g.accept)) })
	eg.Go(func() error { return serveErr("admin listener", adminSrv.Serve(g.adminPause)) })
	if httpSrv != nil {
		eg.Go(func() error { return serveErr("HTTP listener", httpSrv.Serve(g.httpPause)) })
	}
	if ctl.serving != nil {
		ctl.serving()
	}

	// Wait for a stop request, or for a server to fail, reloading on the
	// way when asked to.
	var (
		failed error
		child  *upgrade.Child
	)
wait:
	for {
		select {
		case <-ctl.reload:
			g.reload()
		case <-ctl.upgrade:
			c, err := ctl.successor(g)
			if err != nil {
				g.log.Error("binary upgrade failed; serving on", slog.Any(keyErr, err))
				continue
			}
			child = c
			break wait
		case <-ctx.Done():
			g.log.Info("shutting down", slog.Duration(keyDrainTimeout, g.cfg.Shutdown.DrainTimeout))
			break wait
		case <-egCtx.Done():
			failed = egCtx.Err()
			break wait
		}
	}

	if child != nil {
		g.handOver(ctx, child, proxySrv, adminSrv, httpSrv)
	} else {
		g.admin.ShuttingDown()
	}
	// A fresh context: ctx is already done, and a done context would make
	// Shutdown drain nothing.
	drainCtx, cancel := context.WithTimeout(context.Background(), g.cfg.Shutdown.DrainTimeout)
	defer cancel()
	// Stop accepting and let plain requests finish, while every tunnel
	// goes through its 1001 close handshake; both bounded by the drain
	// timeout, after which what is left is closed.
	var drain sync.WaitGroup
	drain.Go(func() { _ = proxySrv.Shutdown(drainCtx) })
	drain.Go(func() {
		if err := g.proxy.Shutdown(drainCtx); err != nil {
			g.log.Warn("drain timeout reached; closed the remaining tunnels", slog.Duration(keyDrainTimeout, g.cfg.Shutdown.DrainTimeout))
		}
	})
	if httpSrv != nil {
		drain.Go(func() { _ = httpSrv.Shutdown(drainCtx) })
	}
	drain.Wait()
	_ = proxySrv.Close()
	_ = adminSrv.Shutdown(drainCtx)
	stopRunning()
	err := eg.Wait()
	if failed != nil && err != nil {
		return err
	}
	return nil
}

// serveErr maps the normal end of http.Server.Serve to nil.
func serveErr(what string, err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// newLogger returns the process logger, writing in format (config.LogText
// or config.LogJSON) at level and above.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case config.LogText:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case config.LogJSON:
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("bad -log-format %q: use text or json", format)
}

package main

import (
	"bytes"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"time"

	"github.com/wsgate/wsgate/config"
	wstls "github.com/wsgate/wsgate/tls"
)

// Timeouts of the plain-HTTP listener (ACME HTTP-01 and the redirect to
// https). Its requests are tiny; anything slow is a stuck or hostile client
// holding a goroutine and a socket.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpIdleTimeout       = 30 * time.Second
	httpMaxHeaderBytes    = 8 << 10
)

// tlsOptions are the TLS provider's options for cfg.
func tlsOptions(cfg *config.Config, log *slog.Logger) wstls.Options {
	opts := wstls.Options{Files: cfg.TLS.Certificates, Certs: cfg.TLS.Certs, ACME: cfg.TLS.ACME, Tickets: cfg.TLS.Tickets, Logger: log}
	if _, port, err := net.SplitHostPort(cfg.Listen); err == nil {
		opts.HTTPSPort, _ = strconv.Atoi(port)
	}
	return opts
}

// httpServer is the server of the plain-HTTP listener: ACME HTTP-01
// challenges, and a 308 redirect of everything else to the TLS listener's
// real port.
func (g *gateway) httpServer() *http.Server {
	port := g.proxyLn.Addr().(*net.TCPAddr).Port
	return &http.Server{
		Handler:           g.certs.HTTPHandler(wstls.RedirectToHTTPS(port)),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
}

func (g *gateway) httpURL() string { return "http://" + g.httpLn.Addr().String() }

// keepRestartOnlyTLS puts the running ACME settings and http_listen into
// a reloaded cfg, and logs when the file changed them: the ACME manager
// (its account, cache and in-flight orders) and the HTTP listener live as
// long as the process.
func (g *gateway) keepRestartOnlyTLS(cfg *config.Config) {
	if !reflect.DeepEqual(cfg.TLS.ACME, g.cfg.TLS.ACME) || cfg.TLS.HTTPListen != g.cfg.TLS.HTTPListen {
		g.log.Warn("tls.acme and tls.http_listen change only on restart; kept the running ones")
	}
	cfg.TLS.ACME, cfg.TLS.HTTPListen = g.cfg.TLS.ACME, g.cfg.TLS.HTTPListen
	// Session tickets: a new secret or rotation applies now; turning them
	// on or off needs a start (crypto/tls reads that once).
	if cfg.TLS.Tickets.Disabled != g.cfg.TLS.Tickets.Disabled {
		g.log.Warn("tls.session_tickets.disabled changes only on restart; kept the running one")
		cfg.TLS.Tickets.Disabled = g.cfg.TLS.Tickets.Disabled
	}
	if !bytes.Equal(cfg.TLS.Tickets.Secret, g.cfg.TLS.Tickets.Secret) || cfg.TLS.Tickets.Rotate != g.cfg.TLS.Tickets.Rotate {
		if err := g.certs.SetTickets(cfg.TLS.Tickets); err != nil {
			g.log.Error("session ticket secret rejected; the old one stays", slog.Any(keyErr, err))
			cfg.TLS.Tickets = g.cfg.TLS.Tickets
		} else {
			g.log.Info("session ticket keys changed", slog.Bool(keySharedSecret, len(cfg.TLS.Tickets.Secret) > 0))
		}
	}
}

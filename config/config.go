// Package config reads wsgate's YAML configuration.
//
// Decoding is strict: the file is parsed into a yaml.Node tree and walked by
// hand, so that every error (unknown key, wrong type, bad duration, malformed
// address, dangling reference, unreadable certificate, ...) carries the file,
// line and column of the node it concerns. All errors are collected and
// returned together (errors.Join of *Error values); an invalid value is never
// quietly replaced with a default.
//
// A Config is made of the option values of the packages that use them —
// registry.PoolSpec, proxy.Route, tls.CertFile, tls.ACMEOptions — so there
// is nothing to copy between look-alike types. Each default and each rule
// of a value lives in the package that implements the behaviour (such as
// proxy.DefaultDialTimeout, healthcheck.DefaultInterval or
// tls.CheckKeyPair): config fills in those defaults for keys the file
// leaves out, and reports what those rules reject at the position of the
// value. Those types carry no YAML tags; the rest of wsgate never sees
// YAML.
package config

import (
	"crypto/tls"
	"net/netip"
	"time"

	"github.com/wsgate/wsgate/internal/gcpolicy"
	"github.com/wsgate/wsgate/proxy"
	"github.com/wsgate/wsgate/registry"
	wstls "github.com/wsgate/wsgate/tls"
)

// DefaultAdminListen is the admin listener's address when the file has no
// admin.listen.
const DefaultAdminListen = "127.0.0.1:9090"

// DefaultUpgradeTimeout: see Shutdown.UpgradeTimeout. Long enough for most
// WebSocket sessions of a deploy to end by themselves, short enough that
// old generations do not pile up.
const DefaultUpgradeTimeout = 10 * time.Minute

// Config is a whole, validated configuration file.
type Config struct {
	// Path is the file the configuration was read from.
	Path string

	// Listen is the TLS listener's address, host:port.
	Listen string
	// ReusePort opens the TLS and plain-HTTP listeners with SO_REUSEPORT,
	// so that several wsgate processes can share their ports. Only where
	// listener.ReusePortSupported.
	ReusePort bool
	TLS       TLS
	Admin     Admin
	// Pools are the backend pools, as the registry takes them
	// (registry.Store.Apply). Every backend's Weight is set; a pool's
	// Check is nil without a health_check block, and otherwise complete;
	// its SlowStart is 0 (off) without slow_start; its Discover is nil
	// without a discover block, and otherwise has its Interval set
	// (discovery.DefaultInterval when not given). A pool with Discover
	// always has a Check, and may have no Backends.
	Pools []registry.PoolSpec
	// Routes are the proxy's routing table, in file order, with every
	// PathPrefix set.
	Routes   []proxy.Route
	Shutdown Shutdown
	Limits   Limits
	Tunnels  Tunnels
	Log      Log
	// ProxyProtocol is the zero value without a proxy_protocol section.
	ProxyProtocol ProxyProtocol
	// Runtime is the garbage collector's policy (the runtime section):
	// gcpolicy.Default() for keys the file leaves out. GCPercent is never
	// 0, and is gcpolicy.Off only with a MemoryLimit.
	Runtime gcpolicy.Policy
}

// Log is how wsgate writes its log.
type Log struct {
	// Format is LogText (the default) or LogJSON.
	Format string
}

// ProxyProtocol says which peers are load balancers that send PROXY
// protocol headers (proxy.ProxyProtocol).
type ProxyProtocol struct {
	// TrustedCIDRs are their address blocks, masked: a connection from
	// one of them must begin with a PROXY protocol header, and no other
	// connection may. Empty means PROXY protocol is off.
	TrustedCIDRs []netip.Prefix
}

// Tunnels bound what an established WebSocket tunnel may do.
type Tunnels struct {
	// WriteTimeout is how long a peer may accept no bytes while data waits
	// for it before the tunnel is closed (the other side gets close 1001);
	// 0 means never. proxy.DefaultWriteTimeout when not set.
	WriteTimeout time.Duration
	// PingInterval: a client silent this long gets a ping; PingTimeout:
	// one that then sends nothing for this long is cut (the backend gets
	// 1001). 0 PingInterval (the default) means no pings; PingTimeout
	// defaults to PingInterval.
	PingInterval, PingTimeout time.Duration
	// IdleTimeout closes a tunnel quiet both ways for this long; 0 (the
	// default) means never.
	IdleTimeout time.Duration
	// MaxLifetime closes a tunnel after this long, ±10%; 0 (the default)
	// means never.
	MaxLifetime time.Duration
}

// TLS holds the certificate settings of the TLS listener.
type TLS struct {
	// Certificates are static certificate/key pairs chosen by SNI; the
	// first is the default for a ClientHello with no or unknown SNI.
	// Paths are resolved against the directory of the config file when
	// relative. Required unless ACME is set.
	Certificates []wstls.CertFile
	// ACME is nil when the file has no tls.acme block. Its paths are
	// resolved like Certificates'; DirectoryURL is always set.
	ACME *wstls.ACMEOptions
	// HTTPListen is the plain-HTTP listener's address (ACME HTTP-01
	// challenges and a 308 redirect to https), or "" for none.
	HTTPListen string
	// Certs are in-memory pairs served after Certificates: those of
	// Options.Certificates, never from the file.
	Certs []tls.Certificate
	// Tickets control session resumption (tls.session_tickets): the
	// secret read from secret_file.
	Tickets wstls.TicketOptions
}

// Admin is the admin listener (JSON API, /healthz, /metrics, dashboard).
type Admin struct {
	Listen string
	// Pprof mounts net/http/pprof under /debug/pprof/ on the admin
	// listener. Off by default: profiles expose internals.
	Pprof bool
	// TokenFile is the absolute path of admin.token_file, "" without one.
	TokenFile string
	// Token is the bearer token every admin request but GET /healthz and
	// the dashboard page needs: the AdminTokenEnv environment variable when
	// set, else the content of TokenFile; "" for none. A file that is read
	// again (a reload) gives the token in force then.
	Token string
}

// Shutdown configures graceful shutdown.
type Shutdown struct {
	// DrainTimeout bounds the shutdown; proxy.DefaultDrainTimeout when
	// not set.
	DrainTimeout time.Duration
	// CloseSpread spreads the 1001 closes of a shutdown evenly over this
	// window, which must be shorter than DrainTimeout; 0 sends them all at
	// once. A third of DrainTimeout when not set.
	CloseSpread time.Duration
	// UpgradeTimeout bounds how long a process that handed over to a new
	// one (SIGUSR2) keeps its tunnels before it closes them as a shutdown
	// would; DefaultUpgradeTimeout when not set.
	UpgradeTimeout time.Duration
}

// Limits bound what a client or backend can make the proxy do. Each is
// the proxy.Options field of the same name, and defaults to the proxy's
// default, except MaxConnections.
type Limits struct {
	// MaxHeaderBytes bounds the size of a request's headers; more gets 431.
	MaxHeaderBytes int
	// HeaderTimeout bounds the time to read a request's headers (and the
	// TLS handshake before them); a slow client's connection is closed.
	HeaderTimeout time.Duration
	// DialTimeout bounds the connection to a backend plus its answer to the
	// forwarded upgrade.
	DialTimeout time.Duration
	// MaxConnections bounds the WebSocket connections (established and
	// being set up) the proxy holds at once; more get 503. 0 (the default)
	// means one derived at start from the file-descriptor limit.
	MaxConnections int
	// MaxAttempts is how many backends one upgrade is tried on before the
	// client gets 503.
	MaxAttempts int
	// MaxConnectionsPerIP bounds one client address's WebSocket
	// connections (an IPv6 client's /64); 0 means no bound.
	// proxy.DefaultMaxConnectionsPerIP when not set.
	MaxConnectionsPerIP int
	// HandshakeRatePerIP (upgrades a second, a token bucket of
	// HandshakeBurst) bounds one client address's upgrades; 0 means no
	// bound. proxy.DefaultHandshakeRatePerIP and proxy.DefaultHandshakeBurst
	// when not set.
	HandshakeRatePerIP float64
	HandshakeBurst     int
	// MaxMessageBytes bounds a client's message to its backend; 0 (the
	// default) means none.
	MaxMessageBytes int64
	// TLSHandshakeTimeout bounds a client's TLS handshake (and a PROXY
	// protocol header before it). proxy.DefaultHandshakeTimeout when not
	// set.
	TLSHandshakeTimeout time.Duration
}

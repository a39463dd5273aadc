// Package config reads wsgate's YAML configuration.
//
// Decoding is strict: the file is parsed into a yaml.Node tree and walked by
// hand, so that every error (unknown key, wrong type, bad duration, malformed
// address, dangling reference, unreadable certificate, ...) carries the file,
// line and column of the node it concerns. All errors are collected and
// returned together (errors.Join of *Error values); an invalid value is never
// quietly replaced with a default.
//
// The types here are plain option structs with no YAML tags; the rest of
// wsgate never sees YAML.
package config

import "time"

// Defaults applied by Parse to keys the file leaves out. They are documented
// in the README's configuration reference; keep the two in step.
const (
	DefaultAdminListen        = "127.0.0.1:9090"
	DefaultWeight             = 1
	DefaultHealthPath         = "/healthz"
	DefaultHealthInterval     = 1 * time.Second
	DefaultHealthTimeout      = 500 * time.Millisecond
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 2
	DefaultDrainTimeout       = 10 * time.Second
	DefaultMaxHeaderBytes     = 16 << 10
	DefaultHeaderTimeout      = 10 * time.Second
	DefaultDialTimeout        = 5 * time.Second
	DefaultMaxAttempts        = 3
	DefaultWriteTimeout       = 30 * time.Second
	DefaultPathPrefix         = "/"
	// DefaultACMEDirectory is Let's Encrypt's production directory.
	DefaultACMEDirectory = "https://acme-v02.api.letsencrypt.org/directory"
)

// Config is a whole, validated configuration file.
type Config struct {
	// Path is the file the configuration was read from.
	Path string

	// Listen is the TLS listener's address, host:port.
	Listen   string
	TLS      TLS
	Admin    Admin
	Pools    []Pool
	Routes   []Route
	Shutdown Shutdown
	Limits   Limits
	Tunnels  Tunnels
}

// Tunnels bound what an established WebSocket tunnel may do.
type Tunnels struct {
	// WriteTimeout is how long a peer may accept no bytes while data waits
	// for it before the tunnel is closed (the other side gets close 1001);
	// 0 means never.
	WriteTimeout time.Duration
}

// TLS holds the certificate settings of the TLS listener.
type TLS struct {
	// Certificates are static certificate/key pairs chosen by SNI; the
	// first is the default for a ClientHello with no or unknown SNI.
	// Paths are resolved against the directory of the config file when
	// relative. Required unless ACME is set.
	Certificates []Certificate
	// ACME is nil when the file has no tls.acme block.
	ACME *ACME
	// HTTPListen is the plain-HTTP listener's address (ACME HTTP-01
	// challenges and a 308 redirect to https), or "" for none.
	HTTPListen string
}

// ACME configures certificates obtained from an ACME CA (Let's Encrypt by
// default). Static certificates take precedence for the names they cover.
type ACME struct {
	// Domains are the only names certificates are requested for. At least
	// one; DNS names of two or more labels, no wildcards.
	Domains []string
	Email   string
	// CacheDir holds the account key and certificates; resolved against
	// the config file's directory when relative.
	CacheDir string
	// DirectoryURL is an https URL; DefaultACMEDirectory when not set.
	DirectoryURL string
	// DirectoryCAFile is a PEM bundle trusted for the directory's HTTPS,
	// resolved like CacheDir; "" means the system roots.
	DirectoryCAFile string
	// RenewBefore is how long before expiry certificates are renewed; 0
	// means autocert's default (30 days).
	RenewBefore time.Duration
}

// Certificate is one static certificate/key pair in PEM files.
type Certificate struct {
	CertFile string
	KeyFile  string
}

// Admin is the admin listener (JSON API, /healthz, /metrics, dashboard).
type Admin struct {
	Listen string
	// Pprof mounts net/http/pprof under /debug/pprof/ on the admin
	// listener. Off by default: profiles expose internals.
	Pprof bool
}

// Pool is a named set of backends that routes send connections to.
type Pool struct {
	Name     string
	Backends []Backend
	// HealthCheck is nil when the pool has no health_check block.
	HealthCheck *HealthCheck
	// Policy is how the balancer chooses among the backends:
	// "least_connections" or "power_of_two". "" (the key left out) leaves
	// it to the balancer's default, least_connections.
	Policy string
}

// Backend is one backend server of a pool.
type Backend struct {
	// Address is host:port or unix:/path/to.sock.
	Address string
	// Weight is at least 1; DefaultWeight when not set.
	Weight int
}

// HealthCheck configures the active HTTP health check of a pool's backends.
type HealthCheck struct {
	Path               string
	Interval           time.Duration
	Timeout            time.Duration
	HealthyThreshold   int
	UnhealthyThreshold int
	// ExpectedStatus is the status a passing probe answers with; 0 (the
	// default) means any 2xx.
	ExpectedStatus int
}

// Route sends requests whose Host and path match to a pool.
type Route struct {
	// Host is matched case-insensitively against the request's Host with any
	// :port removed; empty matches any host.
	Host string
	// PathPrefix is matched against the request path; "/" when not set.
	PathPrefix string
	Pool       string
	// AllowedOrigins, when not empty, is the list of Origin header values
	// accepted on WebSocket upgrades; others get 403. Empty means the proxy
	// does not check Origin (the backend may).
	AllowedOrigins []string
}

// Shutdown configures graceful shutdown.
type Shutdown struct {
	DrainTimeout time.Duration
}

// Limits bound what a client or backend can make the proxy do.
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
}

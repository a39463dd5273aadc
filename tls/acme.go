package tls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// LetsEncryptURL is the ACME directory used when ACMEOptions.DirectoryURL
// is empty: Let's Encrypt's production CA.
const LetsEncryptURL = autocert.DefaultACMEDirectory

// acmeALPN is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
const acmeALPN = acme.ALPNProto

// ErrACMEOptions is wrapped by the errors NewProvider returns for invalid
// ACMEOptions.
var ErrACMEOptions = errors.New("tls: invalid ACME options")

// Log attribute keys of the ACME side.
const (
	keyDomain     = "domain"
	keyDomains    = "domains"
	keyRemoteAddr = "remote_addr"
	keyCacheKey   = "cache_key"
	keyFileMode   = "file_mode"
	keyIssuer     = "issuer"
	keyServerName = "server_name"
	keySuppressed = "suppressed"
	keyErr        = "err"
	keyStatus     = "status"
	keyType       = "type"
	keyDetail     = "detail"
	keyURL        = "url"
	keyCacheDir   = "cache_dir"
	keyDirectory  = "directory_url"
)

// acmeLogEvery is how often at most one kind of handshake failure is logged
// (per ACME domain, and once for all unknown names together), so that a
// scanner or a CA outage cannot flood the log.
const acmeLogEvery = time.Minute

// ACMEOptions configures certificates obtained over ACME (RFC 8555) by
// golang.org/x/crypto/acme/autocert. Certificates are requested on the
// first handshake for a name, cached in CacheDir, reused across restarts and
// renewed before they expire. Both the TLS-ALPN-01 challenge (on the TLS
// listener) and, once Provider.HTTPHandler has been called, the HTTP-01
// challenge (on port 80) are answered.
type ACMEOptions struct {
	// Domains are the only names ever asked of the CA (autocert's
	// HostWhitelist): a handshake for any other name never reaches the CA.
	// Required. Each is a DNS name with at least two labels; no IP
	// addresses and no wildcards (they need the DNS-01 challenge, which
	// autocert does not do).
	Domains []string

	// Email is the contact address registered with the CA (optional).
	Email string

	// CacheDir holds the account key and the certificates
	// (autocert.DirCache). Required. NewProvider creates it with mode 0700
	// if it does not exist. Several processes may share it (replicas
	// mounting one volume): a lock file per name in it makes them ask the
	// CA for one certificate per name, which all of them then serve.
	CacheDir string

	// DirectoryURL is the CA's ACME directory. Empty means LetsEncryptURL.
	DirectoryURL string

	// DirectoryCAFile is a PEM bundle of the roots trusted for the
	// directory's own HTTPS (a private CA, or Pebble in tests). Empty means
	// the system roots.
	DirectoryCAFile string

	// RenewBefore is how long before expiry a certificate is renewed. Zero
	// means autocert's default: 30 days, or a third of the lifetime of a
	// shorter-lived certificate.
	RenewBefore time.Duration
}

// acmeSide is the ACME half of a Provider. It is fixed for the Provider's
// lifetime: Reload and SetFiles do not change it.
type acmeSide struct {
	m       *autocert.Manager
	domains map[string]bool // normalised
	log     *slog.Logger
	limit   logLimiter
}

func newACMESide(o *ACMEOptions, log *slog.Logger) (*acmeSide, error) {
	var errs []error
	domains := make(map[string]bool, len(o.Domains))
	if len(o.Domains) == 0 {
		errs = append(errs, fmt.Errorf("%w: no domains; list the names to obtain certificates for", ErrACMEOptions))
	}
	for _, d := range o.Domains {
		if err := CheckACMEDomain(d); err != nil {
			errs = append(errs, fmt.Errorf("%w: domain %q: %w", ErrACMEOptions, d, err))
			continue
		}
		domains[normalizeName(d)] = true
	}
	if o.CacheDir == "" {
		errs = append(errs, fmt.Errorf("%w: no cache directory; certificates and the account key must survive restarts", ErrACMEOptions))
	}
	var rootCAs *x509.CertPool
	if o.DirectoryCAFile != "" {
		var err error
		if rootCAs, err = LoadCAFile(o.DirectoryCAFile); err != nil {
			errs = append(errs, fmt.Errorf("%w: ACME directory CA file: %w", ErrACMEOptions, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := os.MkdirAll(o.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("create ACME cache directory: %w", err)
	}
	if fi, err := os.Stat(o.CacheDir); err != nil {
		return nil, fmt.Errorf("ACME cache directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%w: ACME cache directory %s is not a directory", ErrACMEOptions, o.CacheDir)
	} else if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("acme cache directory is accessible to other users; it holds private keys, use mode 0700",
			slog.String(keyCacheDir, o.CacheDir), slog.String(keyFileMode, fi.Mode().Perm().String()))
	}

	dirURL := o.DirectoryURL
	if dirURL == "" {
		dirURL = LetsEncryptURL
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if rootCAs != nil {
		transport.TLSClientConfig = &tls.Config{RootCAs: rootCAs, MinVersion: tls.VersionTLS12}
	}
	names := make([]string, 0, len(domains))
	for d := range domains {
		names = append(names, d)
	}
	slices.Sort(names)
	cache := &loggingCache{Cache: autocert.DirCache(o.CacheDir), log: log, seen: make(map[string]time.Time)}
	s := &acmeSide{
		m: &autocert.Manager{
			Prompt:      autocert.AcceptTOS,
			Cache:       newSharedCache(cache, o.CacheDir, o.RenewBefore, log),
			HostPolicy:  autocert.HostWhitelist(names...),
			RenewBefore: o.RenewBefore,
			Email:       o.Email,
			Client: &acme.Client{
				DirectoryURL: dirURL,
				UserAgent:    "wsgate",
				HTTPClient:   &http.Client{Transport: &problemLogger{next: transport, log: log}},
			},
		},
		domains: domains,
		log:     log,
		limit:   logLimiter{every: acmeLogEvery},
	}
	log.Info("acme enabled", slog.Any(keyDomains, names), slog.String(keyDirectory, dirURL), slog.String(keyCacheDir, o.CacheDir))
	cache.logCached(names)
	return s, nil
}

// certificate answers a handshake for one of the ACME domains, or a
// TLS-ALPN-01 challenge. Failures are logged at most once a minute per
// domain, with the CA's message when it came from the CA.
func (s *acmeSide) certificate(hello *tls.ClientHelloInfo, name string) (*tls.Certificate, error) {
	c, err := s.m.GetCertificate(hello)
	if err != nil && !isChallenge(hello) {
		if ok, n := s.limit.allow("acme:" + name); ok {
			s.log.Error("acme certificate unavailable; handshake refused", slog.String(keyDomain, name),
				slog.Any(keyErr, err), slog.Int(keySuppressed, n))
		}
	}
	return c, err
}

// isChallenge reports whether hello may be a CA's TLS-ALPN-01 validation
// connection (RFC 8737), which offers the "acme-tls/1" protocol.
func isChallenge(hello *tls.ClientHelloInfo) bool {
	return slices.Contains(hello.SupportedProtos, acmeALPN)
}

// noCertificate refuses a handshake for a name with no certificate, with
// at most one log line a minute for all such names together: scanners
// probing by IP address or random names would otherwise flood the log.
func (p *Provider) noCertificate(hello *tls.ClientHelloInfo) error {
	if ok, n := p.unknown.allow("unknown"); ok {
		p.logger.Info("no certificate for server name; handshake refused", slog.String(keyServerName, hello.ServerName),
			slog.String(keyRemoteAddr, remoteAddr(hello)), slog.Int(keySuppressed, n))
	}
	if hello.ServerName == "" {
		return errors.New("tls: no certificate for a client that sends no server name")
	}
	return fmt.Errorf("tls: no certificate for server name %q", hello.ServerName)
}

func remoteAddr(hello *tls.ClientHelloInfo) string {
	if hello.Conn == nil {
		return ""
	}
	return hello.Conn.RemoteAddr().String()
}

// logLimiter lets one event per key through every interval and counts the
// ones it holds back. Keys must come from a bounded set.
type logLimiter struct {
	every time.Duration

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

// allow reports whether an event for key may be logged now and, if so,
// how many were suppressed since the last one.
func (l *logLimiter) allow(key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.suppressed = make(map[string]time.Time), make(map[string]int)
	}
	now := time.Now()
	if last, ok := l.last[key]; ok && now.Sub(last) < l.every {
		l.suppressed[key]++
		return false, 0
	}
	n := l.suppressed[key]
	l.last[key], l.suppressed[key] = now, 0
	return true, n
}

// loggingCache is autocert's cache with a log line for every certificate
// it stores (obtained or renewed) and the first time it hands out each
// certificate (loaded). autocert itself logs nothing.
type loggingCache struct {
	autocert.Cache
	log *slog.Logger

	mu   sync.Mutex
	seen map[string]time.Time // cache key → NotAfter of the certificate last logged
}

// Autocert's cache keys: a domain's ECDSA certificate is stored under the
// domain, its RSA one under domain+"+rsa", challenge certificates under
// domain+"+token", and the account key under this key.
const accountKey = "acme_account+key"

func (c *loggingCache) Get(ctx context.Context, key string) ([]byte, error) {
	data, err := c.Cache.Get(ctx, key)
	if err == nil {
		c.note(key, data, false)
	}
	return data, err
}

func (c *loggingCache) Put(ctx context.Context, key string, data []byte) error {
	if err := c.Cache.Put(ctx, key, data); err != nil {
		// autocert ignores this error: the certificate is served from
		// memory but will not survive a restart.
		c.log.Error("acme cache write failed; the certificate will not survive a restart", slog.String(keyCacheKey, key), slog.Any(keyErr, err))
		return err
	}
	c.note(key, data, true)
	return nil
}

// logCached logs the cached certificate of each domain at start-up, or
// that there is none yet.
func (c *loggingCache) logCached(domains []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, d := range domains {
		_, err := c.Get(ctx, d)
		switch {
		case errors.Is(err, autocert.ErrCacheMiss):
			c.log.Info("acme certificate not cached yet; it is requested on the first connection for the name", slog.String(keyDomain, d))
		case err != nil:
			c.log.Warn("acme cache read failed", slog.String(keyDomain, d), slog.Any(keyErr, err))
		}
	}
}

// note logs the certificate in cache entry data once per key and expiry:
// as obtained from the CA, or as loaded from the cache.
func (c *loggingCache) note(key string, data []byte, obtained bool) {
	if key == accountKey || strings.HasSuffix(key, "+token") {
		return
	}
	leaf := firstCertificate(data)
	if leaf == nil {
		return
	}
	c.mu.Lock()
	logged := c.seen[key].Equal(leaf.NotAfter)
	c.seen[key] = leaf.NotAfter
	c.mu.Unlock()
	if logged {
		return
	}
	attrs := []any{
		slog.String(keySource, "acme"),
		slog.Any(keyNames, leaf.DNSNames),
		slog.Time(keyNotAfter, leaf.NotAfter),
		slog.String(keyIssuer, leaf.Issuer.CommonName),
	}
	if obtained {
		c.log.Info("certificate obtained", attrs...)
	} else {
		c.log.Info("certificate loaded", attrs...)
	}
	if left := time.Until(leaf.NotAfter); left < expiryWarning {
		c.log.Warn("certificate expires soon", append(attrs, slog.Duration(keyExpiresIn, left.Round(time.Minute)))...)
	}
}

// firstCertificate parses the first CERTIFICATE block of an autocert cache
// entry (private key, then chain), or returns nil.
func firstCertificate(data []byte) *x509.Certificate {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			leaf, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil
			}
			return leaf
		}
	}
}

// problemLogger logs the CA's error documents (RFC 7807 problems) and
// failed requests, so that every CA error, renewals in the background
// included, reaches the log with the CA's own message. The response is
// passed on unchanged.
type problemLogger struct {
	next http.RoundTripper
	log  *slog.Logger
}

// maxProblemSize bounds how much of an error document is read.
const maxProblemSize = 64 << 10

func (t *problemLogger) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		t.log.Warn("acme request failed", slog.String(keyURL, req.URL.String()), slog.Any(keyErr, err))
		return nil, err
	}
	if resp.StatusCode < 400 || !strings.Contains(resp.Header.Get("Content-Type"), "problem+json") {
		return resp, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProblemSize))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		// Not an error of the round trip: the CA did answer. The client
		// sees its status code (which decides whether it retries) and
		// reports the short body.
		return resp, nil //nolint:nilerr // see above
	}
	var prob struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	_ = json.Unmarshal(body, &prob) // a malformed document is logged by status alone
	level := slog.LevelWarn
	if strings.HasSuffix(prob.Type, ":badNonce") {
		level = slog.LevelDebug // routine: the client retries with a fresh nonce
	}
	t.log.Log(req.Context(), level, "acme ca error", slog.Int(keyStatus, resp.StatusCode),
		slog.String(keyType, prob.Type), slog.String(keyDetail, prob.Detail), slog.String(keyURL, req.URL.String()))
	return resp, nil
}

// RedirectToHTTPS returns the handler that answers every request with a 308
// redirect to the same host, path and query over https. Any port in the
// Host header is dropped and httpsPort added, unless it is 0 or 443. A
// request without a Host gets 400.
func RedirectToHTTPS(httpsPort int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := hostOnly(r.Host)
		if host == "" {
			http.Error(w, "missing Host header", http.StatusBadRequest)
			return
		}
		if httpsPort != 0 && httpsPort != 443 {
			host = net.JoinHostPort(host, fmt.Sprint(httpsPort))
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]" // IPv6
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// hostOnly strips any port, and the brackets of an IPv6 address, from a
// Host header.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

// HTTPHandler returns the handler for the plain-HTTP listener (port 80):
// with ACME, it answers the CA's HTTP-01 challenges under
// /.well-known/acme-challenge/ (and from then on the ACME side also offers
// HTTP-01 to the CA, next to TLS-ALPN-01); every other request goes to
// fallback. A nil fallback means RedirectToHTTPS(Options.HTTPSPort).
// Challenge requests are matched by host with any :port removed.
func (p *Provider) HTTPHandler(fallback http.Handler) http.Handler {
	if fallback == nil {
		fallback = RedirectToHTTPS(p.httpsPort)
	}
	if p.acme == nil {
		return fallback
	}
	h := p.acme.m.HTTPHandler(fallback)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			// The host policy compares bare names; a CA validating on a
			// port other than 80 sends Host: name:port.
			r = r.Clone(r.Context())
			r.Host = hostOnly(r.Host)
		}
		h.ServeHTTP(w, r)
	})
}

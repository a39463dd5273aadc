package tls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/internal/filestamp"
)

// Sentinel errors. Errors that name a file wrap ErrExpired and ErrNotYetValid,
// so test for them with errors.Is.
var (
	// ErrNoCertificates is returned by NewProvider when Options holds
	// neither Files nor Certs nor ACME.
	ErrNoCertificates = errors.New("tls: no certificates configured")
	// ErrExpired means a certificate's NotAfter has passed.
	ErrExpired = errors.New("tls: certificate expired")
	// ErrNotYetValid means a certificate's NotBefore is in the future.
	ErrNotYetValid = errors.New("tls: certificate not yet valid")
)

// expiryWarning is how close to its NotAfter a certificate is logged at Warn.
const expiryWarning = 14 * 24 * time.Hour

// Log attribute keys (those of the ACME side are in acme.go), as listed
// under "Every key" in the README.
const (
	keySource       = "source"
	keyNames        = "names"
	keyNotAfter     = "not_after"
	keyExpiresIn    = "expires_in"
	keyCertificates = "certificates"
	keyPeriod       = "period"
)

// CertFile names a PEM-encoded certificate chain (leaf first) and its
// PEM-encoded private key.
type CertFile struct {
	CertFile, KeyFile string
}

// Options configures a Provider. At least one of Files, Certs and ACME must
// be set.
type Options struct {
	// Files are PEM pairs, read by NewProvider and read again by Reload.
	// Both paths of every pair must be set.
	Files []CertFile

	// Certs are in-memory pairs (for example the self-signed one of
	// `wsgate demo`), served after Files. They are checked once by
	// NewProvider and are not affected by Reload. If a Certificate has no
	// Leaf, NewProvider parses one; the caller's slice is not modified.
	Certs []tls.Certificate

	// ACME, when not nil, obtains certificates for ACMEOptions.Domains from
	// an ACME CA. A name that a static certificate (Files or Certs)
	// matches, exactly or by wildcard, is served that certificate; the ACME
	// domains are served over ACME; other names get the static default, or
	// a handshake failure when there is no static certificate. ACME is
	// fixed for the Provider's lifetime: Reload and SetFiles keep it.
	ACME *ACMEOptions

	// HTTPSPort is the TLS listener's port, which HTTPHandler(nil) puts in
	// its redirects. 0 or 443 leaves the port out of the URL.
	HTTPSPort int

	// Tickets control session resumption; the zero value is crypto/tls's
	// own (on, with keys of this process's). See tickets.go.
	Tickets TicketOptions

	// Logger receives certificate lifecycle events. nil means
	// slog.Default().
	Logger *slog.Logger
}

// CertInfo describes one served certificate.
type CertInfo struct {
	// Source is the certificate file for Options.Files and "Certs[i]" for
	// Options.Certs.
	Source string
	// Names are the certificate's DNS and IP subject alternative names.
	Names               []string
	NotBefore, NotAfter time.Time
}

// Provider serves static certificates chosen by SNI, and certificates
// obtained over ACME. The first static certificate (Files[0], or Certs[0]
// if there are no Files) is the default for a ClientHello with no SNI or an
// SNI that matches none. Safe for concurrent use.
type Provider struct {
	files     []CertFile
	certs     []*certEntry // Options.Certs, checked once by NewProvider
	logger    *slog.Logger
	acme      *acmeSide // nil without Options.ACME
	httpsPort int
	unknown   logLimiter // for handshakes with no certificate to serve

	reloadMu sync.Mutex // serialises Reload and SetFiles; guards files and stamps
	// stamps are the files' stamps when they were last loaded (taken just
	// before reading them), for Watch.
	stamps []filestamp.Stamp
	set    atomic.Pointer[certSet]

	// cfg is the one *tls.Config TLSConfig returns: its session ticket
	// keys rotate in place (SetSessionTicketKeys).
	cfg       *tls.Config
	ticketsMu sync.Mutex    // guards tickets and period
	tickets   TicketOptions // guarded by ticketsMu
	period    int64         // of the ticket keys in force; guarded by ticketsMu
}

// NewProvider loads and checks every certificate in opts. It fails if any
// pair cannot be loaded, if a key does not match its certificate, or if a
// certificate is expired or not yet valid; the error names every such file.
func NewProvider(opts Options) (*Provider, error) {
	if len(opts.Files) == 0 && len(opts.Certs) == 0 && opts.ACME == nil {
		return nil, ErrNoCertificates
	}
	p := &Provider{
		files:     append([]CertFile(nil), opts.Files...),
		logger:    opts.Logger,
		httpsPort: opts.HTTPSPort,
		unknown:   logLimiter{every: acmeLogEvery},
	}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	if n := len(opts.Tickets.Secret); n > 0 && n < MinTicketSecret {
		return nil, errShortSecret
	}

	now := time.Now()
	fileEntries, err := p.loadFiles(now)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for i, c := range opts.Certs {
		source := fmt.Sprintf("Certs[%d]", i)
		e, err := newCertEntry(c, source, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("certificate %s: %w", source, err))
			continue
		}
		p.certs = append(p.certs, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if opts.ACME != nil {
		if p.acme, err = newACMESide(opts.ACME, p.logger); err != nil {
			return nil, err
		}
	}

	p.publish(fileEntries, now)
	p.cfg = p.newTLSConfig()
	p.tickets = opts.Tickets
	p.tickets.Secret = append([]byte(nil), opts.Tickets.Secret...)
	p.period = p.tickets.apply(p.cfg, now)
	return p, nil
}

// TLSConfig returns p's server config (the same one each call; do not
// modify it): GetCertificate picks a
// certificate by SNI (an exact DNS SAN, then a one-label wildcard such as
// *.example.com, case-insensitively and ignoring a trailing dot, else the
// default), the minimum version is TLS 1.2 with only ECDHE AEAD cipher
// suites for 1.2, and ALPN offers only "http/1.1" (followed by
// "acme-tls/1" with ACME, for the TLS-ALPN-01 challenge).
//
// With ACME, a static certificate that matches the name (exactly or by
// wildcard) comes first; then the ACME domains are served over ACME (the
// first handshake for a name waits while the certificate is obtained);
// then the static default. With no static certificate, any other name is
// refused with a TLS alert and never asked of the CA. A ClientHello that
// offers "acme-tls/1" goes to autocert, which answers TLS-ALPN-01
// challenges.
//
// Certificates are read through an atomic pointer on every handshake, so
// Reload takes effect for new handshakes without touching established
// connections. Each call to GetCertificate returns a distinct
// *tls.Certificate that the caller may modify. Sessions resume as
// Options.Tickets says; with a shared secret, Watch rotates the keys.
//
// The caller owns the returned Config. Note that http.Server.ServeTLS and
// ListenAndServeTLS add "h2" to a copy of NextProtos unless HTTP/2 is
// disabled on that server (Server.Protocols, or a non-nil empty
// TLSNextProto); wsgate needs HTTP/1.1 for upgrades, so either serve with
// tls.NewListener and Server.Serve or disable HTTP/2.
func (p *Provider) TLSConfig() *tls.Config { return p.cfg }

func (p *Provider) newTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Only consulted for TLS 1.2; TLS 1.3 suites are not configurable.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos:     p.nextProtos(),
		GetCertificate: p.getCertificate,
		// crypto/tls otherwise sends the first 128 KiB of every connection
		// in records of about one TCP segment, growing, to speed up the
		// first paint of web pages. A WebSocket proxy relays messages, and
		// small records only multiply its record seals and system calls.
		DynamicRecordSizingDisabled: true,
	}
}

func (p *Provider) nextProtos() []string {
	if p.acme != nil {
		return []string{"http/1.1", acmeALPN}
	}
	return []string{"http/1.1"}
}

func (p *Provider) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := p.set.Load()
	var e *certEntry
	if p.acme == nil {
		e = set.lookup(hello)
	} else {
		if isChallenge(hello) {
			return p.acme.m.GetCertificate(hello)
		}
		if e = set.match(hello); e == nil {
			if name := normalizeName(hello.ServerName); p.acme.domains[name] {
				return p.acme.certificate(hello, name)
			}
			if len(set.entries) == 0 {
				return nil, p.noCertificate(hello)
			}
			e = set.entries[0]
		}
	}
	// A shallow copy per handshake, as derper's certProvider contract asks.
	// The chain's len equals its cap (see newCertEntry), so appending to
	// the copy's Certificate reallocates instead of writing into ours.
	c := *e.cert
	return &c, nil
}

// Reload reads Files again. If any pair fails to load (a missing file, a key
// that does not match, a certificate that is expired or not yet valid) it
// returns an error naming the file and keeps serving the old set. Otherwise
// the new set is used for every handshake that starts after Reload returns;
// established connections are not affected. In-memory Certs are kept as
// they are.
func (p *Provider) Reload() error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()

	now := time.Now()
	entries, err := p.loadFiles(now)
	if err != nil {
		return err
	}
	p.publish(entries, now)
	p.logger.Info("certificates reloaded", slog.Int(keyCertificates, len(entries)+len(p.certs)))
	return nil
}

// SetFiles replaces Files (a config reload that names other files) and
// loads them, with Reload's guarantees: if any pair fails, it returns the
// error and nothing changes, neither the files nor the certificates
// served.
func (p *Provider) SetFiles(files []CertFile) error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()

	now := time.Now()
	old := p.files
	p.files = append([]CertFile(nil), files...)
	entries, err := p.loadFiles(now)
	if err != nil {
		p.files = old
		return err
	}
	if len(entries)+len(p.certs) == 0 && p.acme == nil {
		p.files = old
		return ErrNoCertificates
	}
	p.publish(entries, now)
	p.logger.Info("certificates reloaded", slog.Int(keyCertificates, len(entries)+len(p.certs)))
	return nil
}

// Certificates describes the certificates currently served, the default
// first.
func (p *Provider) Certificates() []CertInfo {
	set := p.set.Load()
	infos := make([]CertInfo, len(set.entries))
	for i, e := range set.entries {
		infos[i] = e.info()
	}
	return infos
}

// loadFiles records the files' stamps, then loads every pair in p.files
// and joins the errors of all that
// fail.
func (p *Provider) loadFiles(now time.Time) ([]*certEntry, error) {
	var (
		entries []*certEntry
		errs    []error
	)
	p.stamps = stampFiles(p.files)
	for _, f := range p.files {
		e, err := loadFile(f, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		entries = append(entries, e)
	}
	return entries, errors.Join(errs...)
}

// publish swaps in the set of fileEntries followed by p.certs and logs it.
func (p *Provider) publish(fileEntries []*certEntry, now time.Time) {
	entries := make([]*certEntry, 0, len(fileEntries)+len(p.certs))
	entries = append(entries, fileEntries...)
	entries = append(entries, p.certs...)
	p.set.Store(newCertSet(entries))

	for _, e := range entries {
		notAfter := e.cert.Leaf.NotAfter
		attrs := []any{
			slog.String(keySource, e.source),
			slog.Any(keyNames, e.names),
			slog.Time(keyNotAfter, notAfter),
		}
		p.logger.Info("certificate loaded", attrs...)
		if left := notAfter.Sub(now); left < expiryWarning {
			p.logger.Warn("certificate expires soon", append(attrs, slog.Duration(keyExpiresIn, left.Round(time.Minute)))...)
		}
	}
}

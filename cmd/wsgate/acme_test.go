package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/miekg/dns"

	"github.com/wsgate/wsgate/internal/proctest"
)

// The ACME end-to-end test runs Pebble (letsencrypt/pebble, pinned as a Go
// tool in go.mod) on loopback, with a DNS server of the test's own that
// answers 127.0.0.1 for every name, and wsgate processes that obtain their
// certificates from it.
//
// Pebble validates TLS-ALPN-01 on one fixed port and HTTP-01 on another,
// for every name. The test points the TLS-ALPN-01 port at gateway A's TLS
// listener and the HTTP-01 port at gateway B's HTTP listener:
//
//   - A has no http_listen, so autocert never offers HTTP-01: its name can
//     only be validated over TLS-ALPN-01, on its own TLS listener.
//   - B's TLS-ALPN-01 attempt lands on A, which holds no challenge
//     certificate for B's name, so it fails, and autocert falls back to
//     HTTP-01 (offered because B has http_listen), on B's HTTP listener.
//     B's certificate can only come from HTTP-01.
const (
	alpnDomain = "alpn.wsgate.test"
	httpDomain = "http.wsgate.test"
)

var (
	pebbleOnce sync.Once
	pebbleBin  string
	pebbleErr  error
)

// buildPebble builds the pinned Pebble (`go tool pebble`) next to the
// other test binaries, once.
func buildPebble(t *testing.T) string {
	t.Helper()
	pebbleOnce.Do(func() {
		bin := filepath.Join(filepath.Dir(wsgateBin), "pebble")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/letsencrypt/pebble/v2/cmd/pebble").CombinedOutput()
		if err != nil {
			pebbleErr = fmt.Errorf("%v\n%s", err, out)
			return
		}
		pebbleBin = bin
	})
	if pebbleErr != nil {
		// Pebble is pinned in go.mod, so CI (which reaches the module
		// proxy) must build it: there a failure is a failure, not a skip.
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot build pebble (go tool pebble): %v", pebbleErr)
		}
		t.Skipf("cannot build pebble (go tool pebble): %v", pebbleErr)
	}
	return pebbleBin
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startDNS runs a DNS server over TCP (Pebble's resolver client uses TCP)
// that answers every A question with 127.0.0.1 and nothing else.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

// pebble is a running Pebble process.
type pebble struct {
	cmd     *exec.Cmd
	out     *proctest.SyncBuffer
	done    chan struct{}
	dirURL  string
	mgmtURL string
	client  *http.Client // trusts Pebble's own HTTPS certificate
}

// startPebble runs Pebble on loopback with its HTTP-01 and TLS-ALPN-01
// validations sent to httpPort and tlsPort, names resolved by dnsAddr.
func startPebble(t *testing.T, bin, dnsAddr string, httpPort, tlsPort int) *pebble {
	t.Helper()
	certDir, err := filepath.Abs("testdata/pebble")
	if err != nil {
		t.Fatal(err)
	}
	dirAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	mgmtAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":                  dirAddr,
		"managementListenAddress":        mgmtAddr,
		"certificate":                    filepath.Join(certDir, "localhost.cert.pem"),
		"privateKey":                     filepath.Join(certDir, "localhost.key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{
			"default": map[string]any{"description": "test", "validityPeriod": 7776000},
		},
	}}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "pebble.json")
	if err := os.WriteFile(cfgFile, data, 0o600); err != nil {
		t.Fatal(err)
	}

	p := &pebble{
		cmd:     exec.Command(bin, "-config", cfgFile, "-dnsserver", dnsAddr),
		out:     &proctest.SyncBuffer{},
		done:    make(chan struct{}),
		dirURL:  "https://" + dirAddr + "/dir",
		mgmtURL: "https://" + mgmtAddr,
	}
	p.cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once
		"PEBBLE_WFE_NONCEREJECT=0", // no random badNonce errors
		"PEBBLE_AUTHZREUSE=0",      // every order is validated afresh
	)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("pebble output:\n%s", p.out.String())
		}
	})

	minica, err := os.ReadFile(filepath.Join(certDir, "pebble.minica.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(minica)
	p.client = &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		Timeout:   5 * time.Second,
	}
	t.Cleanup(p.client.CloseIdleConnections)
	waitFor(t, "pebble's directory", func() bool {
		select {
		case <-p.done:
			t.Fatalf("pebble exited:\n%s", p.out.String())
		default:
		}
		resp, err := p.client.Get(p.dirURL)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// root returns a pool holding only Pebble's issuing root, from its
// management API.
func (p *pebble) root(t *testing.T) *x509.CertPool {
	t.Helper()
	resp, err := p.client.Get(p.mgmtURL + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	pemData, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /roots/0 = %d, %v", resp.StatusCode, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("GET /roots/0 returned no PEM certificate: %q", pemData)
	}
	return pool
}

// stop kills Pebble and waits for it to exit.
func (p *pebble) stop() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// acmeGate is a `wsgate run` process with an ACME config.
type acmeGate struct {
	*proc
	proxyAddr string
}

// startACMEGate writes a config that obtains a certificate for domain
// from the Pebble directory, with the top-level keys in extra, and starts
// wsgate with it.
func startACMEGate(t *testing.T, cfgFile, listen, httpListen, domain, cacheDir, dirURL, backendAddr, extra string) *acmeGate {
	t.Helper()
	caFile, err := filepath.Abs("testdata/pebble/pebble.minica.pem")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %q\ntls:\n  acme:\n    domains: [%s]\n    email: ops@wsgate.test\n", listen, domain)
	fmt.Fprintf(&b, "    cache_dir: %s\n    directory_url: %s\n    directory_ca_file: %s\n", cacheDir, dirURL, caFile)
	if httpListen != "" {
		fmt.Fprintf(&b, "  http_listen: %q\n", httpListen)
	}
	fmt.Fprintf(&b, "admin:\n  listen: 127.0.0.1:0\npools:\n  - name: app\n    backends:\n      - address: %s\n", backendAddr)
	// The first handshake for a name waits while the certificate is
	// obtained; header_timeout bounds the handshake.
	b.WriteString("routes:\n  - pool: app\nlimits:\n  header_timeout: 30s\nshutdown:\n  drain_timeout: 2s\n")
	b.WriteString(extra)
	if err := os.WriteFile(cfgFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, wsgateBin, "run", "-config", cfgFile)
	g := &acmeGate{proc: p}
	g.proxyAddr = strings.TrimPrefix(p.WaitLine("wsgate: proxy listening on"), "https://")
	return g
}

// dialDomain opens wss://domain/ws through addr, trusting only roots, and
// returns the connection and the certificate the server presented.
func dialDomain(addr, domain string, roots *x509.CertPool) (*websocket.Conn, *x509.Certificate, error) {
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var nd net.Dialer
			return nd.DialContext(ctx, network, addr)
		},
		TLSClientConfig:  &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		HandshakeTimeout: 30 * time.Second,
	}
	c, resp, err := d.Dial("wss://"+domain+"/ws", nil)
	if err != nil {
		return nil, nil, err
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	return c, c.UnderlyingConn().(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

func dialDomainOK(t *testing.T, addr, domain string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	c, leaf, err := dialDomain(addr, domain, roots)
	if err != nil {
		t.Fatalf("Dial(wss://%s/ws) via %s error = %v", domain, addr, err)
	}
	defer c.Close()
	echo(t, c, "hello "+domain)
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != domain {
		t.Errorf("certificate names = %v, want [%s]", leaf.DNSNames, domain)
	}
	return leaf
}

// acmeEnv is what an ACME end-to-end test runs against: Pebble, which
// validates TLS-ALPN-01 on tlsPort and HTTP-01 on httpPort, the roots it
// issues under, and a reference backend.
type acmeEnv struct {
	pb                *pebble
	roots             *x509.CertPool
	backendAddr       string
	tlsPort, httpPort int
}

func startACMEEnv(t *testing.T) acmeEnv {
	t.Helper()
	bin := buildPebble(t)
	dnsAddr := startDNS(t)
	e := acmeEnv{tlsPort: freePort(t), httpPort: freePort(t)}
	e.pb = startPebble(t, bin, dnsAddr, e.httpPort, e.tlsPort)
	e.roots = e.pb.root(t)
	_, e.backendAddr = startBackend(t, "acme")
	return e
}

func TestACMEPebble(t *testing.T) {
	started := time.Now()
	e := startACMEEnv(t)
	pb, roots, backendAddr, tlsA, httpB := e.pb, e.roots, e.backendAddr, e.tlsPort, e.httpPort
	dir := t.TempDir()
	cacheA := filepath.Join(dir, "cache-a")

	// TLS-ALPN-01 only: gateway A, no http_listen, on Pebble's tlsPort.
	cfgA := filepath.Join(dir, "a.yaml")
	a := startACMEGate(t, cfgA, fmt.Sprintf("127.0.0.1:%d", tlsA), "", alpnDomain, cacheA, pb.dirURL, backendAddr, "")
	leafA := dialDomainOK(t, a.proxyAddr, alpnDomain, roots)
	t.Logf("TLS-ALPN-01: certificate %x for %v after %v", leafA.SerialNumber, leafA.DNSNames, time.Since(started).Round(time.Millisecond))

	// HTTP-01 only: gateway B, whose http_listen is Pebble's httpPort.
	httpListen := fmt.Sprintf("127.0.0.1:%d", httpB)
	b := startACMEGate(t, filepath.Join(dir, "b.yaml"), "127.0.0.1:0", httpListen, httpDomain, filepath.Join(dir, "cache-b"), pb.dirURL, backendAddr, "")
	if got := b.WaitLine("wsgate: http listening on"); got != "http://"+httpListen {
		t.Errorf("http listener = %q, want http://%s", got, httpListen)
	}
	leafB := dialDomainOK(t, b.proxyAddr, httpDomain, roots)
	t.Logf("HTTP-01: certificate %x for %v", leafB.SerialNumber, leafB.DNSNames)

	// B's HTTP listener redirects everything else to its TLS port.
	req, err := http.NewRequest(http.MethodGet, "http://"+httpListen+"/ws/chat?room=a%20b", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = httpDomain + ":80"
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, bPort, _ := net.SplitHostPort(b.proxyAddr)
	wantLoc := "https://" + httpDomain + ":" + bPort + "/ws/chat?room=a%20b"
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != wantLoc {
		t.Errorf("GET http://%s/ws/chat = %d Location %q, want 308 %q", httpListen, resp.StatusCode, resp.Header.Get("Location"), wantLoc)
	}

	// A name that is not in domains gets a TLS alert, never a request to
	// the CA, and the refusals are logged once, not once per handshake.
	for range 5 {
		if c, _, err := dialDomain(a.proxyAddr, "other.wsgate.test", roots); err == nil {
			c.Close()
			t.Fatal("handshake for a name outside domains succeeded")
		}
	}
	if n := strings.Count(a.Stderr.String(), "no certificate for server name"); n != 1 {
		t.Errorf("wsgate logged %d refusals of other.wsgate.test in 5 handshakes, want 1", n)
	}

	// Restart A with the CA gone: the cached certificate serves on.
	pb.stop()
	a.Signal(syscall.SIGTERM)
	if code := a.Exit(5 * time.Second); code != 0 {
		t.Fatalf("wsgate exit code after SIGTERM = %d, want 0", code)
	}
	a2 := startACMEGate(t, cfgA, fmt.Sprintf("127.0.0.1:%d", tlsA), "", alpnDomain, cacheA, pb.dirURL, backendAddr, "")
	leafA2 := dialDomainOK(t, a2.proxyAddr, alpnDomain, roots)
	if leafA2.SerialNumber.Cmp(leafA.SerialNumber) != 0 {
		t.Errorf("after restart served certificate %x, want the cached %x", leafA2.SerialNumber, leafA.SerialNumber)
	}
	if !regexp.MustCompile(`msg="certificate loaded" (pid=\d+ )?source=acme`).MatchString(a2.Stderr.String()) {
		t.Errorf("restarted wsgate did not log the cached certificate; stderr:\n%s", a2.Stderr.String())
	}
	if fi, err := os.Stat(cacheA); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("cache_dir mode = %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	t.Logf("ACME end-to-end took %v", time.Since(started).Round(time.Millisecond))
}

// Two wsgate processes share one cache_dir (replicas on a shared volume)
// and are asked for the same new name at the same moment: the CA issues
// one certificate, and both serve it. Pebble validates TLS-ALPN-01 on A's
// TLS port and HTTP-01 on an http_listen that both share with reuse_port,
// so the order succeeds whichever of them places it and wherever the
// validation lands: challenge tokens are shared through the cache too.
func TestACMESharedCache(t *testing.T) {
	e := startACMEEnv(t)
	pb, roots, backendAddr := e.pb, e.roots, e.backendAddr
	dir := t.TempDir()
	cache := filepath.Join(dir, "shared-cache")
	httpListen := fmt.Sprintf("127.0.0.1:%d", e.httpPort)
	const domain = "shared.wsgate.test"

	gates := []*acmeGate{
		startACMEGate(t, filepath.Join(dir, "a.yaml"), fmt.Sprintf("127.0.0.1:%d", e.tlsPort), httpListen, domain, cache, pb.dirURL, backendAddr, "reuse_port: true\n"),
		startACMEGate(t, filepath.Join(dir, "b.yaml"), "127.0.0.1:0", httpListen, domain, cache, pb.dirURL, backendAddr, "reuse_port: true\n"),
	}
	leaves := make([]*x509.Certificate, len(gates))
	errs := make([]error, len(gates))
	var wg sync.WaitGroup
	for i, g := range gates {
		wg.Go(func() {
			c, leaf, err := dialDomain(g.proxyAddr, domain, roots)
			if err == nil {
				c.Close()
			}
			leaves[i], errs[i] = leaf, err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("gateway %d: Dial(wss://%s/ws) error = %v", i, domain, err)
		}
	}
	if leaves[0].SerialNumber.Cmp(leaves[1].SerialNumber) != 0 {
		t.Errorf("the gateways serve two certificates, %x and %x; want one", leaves[0].SerialNumber, leaves[1].SerialNumber)
	}
	if n := strings.Count(pb.out.String(), "Issued certificate serial"); n != 1 {
		t.Errorf("Pebble issued %d certificates for one name asked by two gateways at once, want 1", n)
	}
	waited := 0
	for _, g := range gates {
		if strings.Contains(g.Stderr.String(), "another instance is obtaining this; waiting for it") {
			waited++
		}
	}
	t.Logf("certificate %x; %d gateway(s) waited for the other's order", leaves[0].SerialNumber, waited)

	// Both keep serving it.
	for _, g := range gates {
		dialDomainOK(t, g.proxyAddr, domain, roots)
	}
}

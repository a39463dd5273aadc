package config

import (
	"crypto/tls"
	"errors"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/internal/gcpolicy"
	"github.com/wsgate/wsgate/proxy"
	"github.com/wsgate/wsgate/registry"
	wstls "github.com/wsgate/wsgate/tls"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.golden from the errors Parse returns")

// configErrors returns the *Error values joined in err, failing the test
// if any is not an *Error or lacks a position.
func configErrors(t *testing.T, err error) []*Error {
	t.Helper()
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	out := make([]*Error, 0, len(list))
	for _, e := range list {
		ce, ok := e.(*Error)
		if !ok {
			t.Errorf("joined error %v is %T, want *Error", e, e)
			continue
		}
		if ce.Line < 1 || ce.Col < 1 {
			t.Errorf("error %q has no position (Line %d, Col %d)", ce, ce.Line, ce.Col)
		}
		out = append(out, ce)
	}
	return out
}

func TestParseBad(t *testing.T) {
	t.Setenv(AdminTokenEnv, "") // the golden files know no token but their own
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("Glob(testdata/bad/*.yaml) = %v, %v; want files", files, err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			c, err := Load(file)
			if err == nil {
				t.Fatalf("Load(%q) = %+v, nil; want errors", file, c)
			}
			if c != nil {
				t.Errorf("Load(%q) returned a non-nil *Config with errors", file)
			}
			var b strings.Builder
			for _, e := range configErrors(t, err) {
				b.WriteString(e.Error())
				b.WriteString("\n")
			}
			got := b.String()
			if got != err.Error()+"\n" {
				t.Errorf("joined error text differs from the error lines:\n%s\nvs\n%s", err, got)
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Load(%q) errors:\n%s\nwant (%s):\n%s", file, got, golden, want)
			}
		})
	}
}

// TestParseBadErrorCount pins, for files that hold several independent
// errors, that every one of them is reported.
func TestParseBadErrorCount(t *testing.T) {
	tests := []struct {
		file string
		want int
	}{
		{"testdata/bad/many.yaml", 13},
		{"testdata/bad/unknown_key.yaml", 9},
		{"testdata/bad/missing_top.yaml", 4},
		{"testdata/bad/discover.yaml", 21},
	}
	for _, tc := range tests {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			_, err := Load(tc.file)
			if got := len(configErrors(t, err)); got != tc.want {
				t.Errorf("Load(%q) reported %d errors, want %d:\n%v", tc.file, got, tc.want, err)
			}
		})
	}
}

// defaultConfig is what Parse makes of keys a file leaves out: the
// defaults of the packages that own them, written out here so that a
// change to one of them shows.
func defaultConfig(path string) Config {
	return Config{
		Path:     path,
		Admin:    Admin{Listen: "127.0.0.1:9090"},
		Shutdown: Shutdown{DrainTimeout: 10 * time.Second, CloseSpread: 10 * time.Second / 3, UpgradeTimeout: 10 * time.Minute},
		Tunnels:  Tunnels{WriteTimeout: 30 * time.Second},
		Log:      Log{Format: "text"},
		Runtime:  gcpolicy.Policy{GCPercent: 10, MemoryLimit: gcpolicy.Limit{Percent: 90}},
		Limits: Limits{
			MaxHeaderBytes:      16 << 10,
			HeaderTimeout:       10 * time.Second,
			DialTimeout:         5 * time.Second,
			MaxAttempts:         3,
			MaxConnectionsPerIP: 1000,
			HandshakeRatePerIP:  50,
			HandshakeBurst:      500,
			TLSHandshakeTimeout: 10 * time.Second,
		},
	}
}

var testCert = wstls.CertFile{CertFile: "testdata/certs/cert.pem", KeyFile: "testdata/certs/key.pem"}

func defaultHealthCheck() *registry.HealthCheck {
	return &registry.HealthCheck{
		Path:               "/healthz",
		Interval:           time.Second,
		Timeout:            500 * time.Millisecond,
		HealthyThreshold:   2,
		UnhealthyThreshold: 2,
	}
}

// backends are backends of weight 1 at addrs.
func backends(addrs ...string) []registry.BackendSpec {
	bs := make([]registry.BackendSpec, len(addrs))
	for i, a := range addrs {
		bs[i] = registry.BackendSpec{Address: a, Weight: 1}
	}
	return bs
}

func TestParseGood(t *testing.T) {
	t.Setenv(AdminTokenEnv, "")
	tests := []struct {
		name string
		want func(c *Config)
	}{
		{
			name: "minimal",
			want: func(c *Config) {
				c.Listen = "127.0.0.1:0"
				c.TLS.Certificates = []wstls.CertFile{testCert}
				c.Pools = []registry.PoolSpec{{Name: "app", Backends: backends("127.0.0.1:9001")}}
				c.Routes = []proxy.Route{{PathPrefix: "/", Pool: "app"}}
			},
		},
		{
			name: "full",
			want: func(c *Config) {
				c.Listen = ":8443"
				c.ReusePort = true
				c.TLS.Certificates = []wstls.CertFile{testCert, testCert}
				c.Admin.Listen = "[::1]:9999"
				c.Admin.Pprof = true
				c.Pools = []registry.PoolSpec{
					{
						Name: "chat",
						Backends: []registry.BackendSpec{
							{Address: "10.0.0.1:9001", Weight: 3},
							{Address: "backend-2.internal:9001", Weight: 1},
							{Address: "unix:/run/wsgate/chat.sock", Weight: 1},
						},
						Check:     &registry.HealthCheck{Path: "/ready", Interval: 5 * time.Second, Timeout: 5 * time.Second, HealthyThreshold: 1, UnhealthyThreshold: 4, ExpectedStatus: 204},
						Policy:    "power_of_two",
						SlowStart: time.Minute,
					},
					{
						Name:     "feed",
						Backends: backends("127.0.0.1:9101"),
						Check: func() *registry.HealthCheck {
							hc := defaultHealthCheck()
							hc.Interval = 2 * time.Second
							return hc
						}(),
						Discover: &registry.Discover{Name: "_feed._tcp.example.com.", Type: "SRV", Interval: 30 * time.Second, Resolver: "[fd00::53]:5353"},
					},
					{Name: "42", Backends: []registry.BackendSpec{{Address: "127.0.0.1:9201", Weight: 16}}},
				}
				c.Routes = []proxy.Route{
					{Host: "WS.example.com", PathPrefix: "/chat", Pool: "chat", AllowedOrigins: []string{"https://app.example.com", "http://localhost:3000"}},
					{Host: "127.0.0.1", PathPrefix: "/", Pool: "feed", AllowedOrigins: []string{}},
					{Host: "", PathPrefix: "/", Pool: "42"},
				}
				c.Shutdown.DrainTimeout = 90 * time.Second
				c.Shutdown.CloseSpread = 20 * time.Second
				c.Limits = Limits{MaxHeaderBytes: 1024, HeaderTimeout: 2 * time.Second, DialTimeout: 250 * time.Millisecond, MaxAttempts: 10, MaxConnections: 5000,
					MaxConnectionsPerIP: 0, HandshakeRatePerIP: 0.5, HandshakeBurst: 3, MaxMessageBytes: 1 << 20, TLSHandshakeTimeout: 3 * time.Second}
				c.Tunnels = Tunnels{PingInterval: 25 * time.Second, PingTimeout: 5 * time.Second, IdleTimeout: time.Hour, MaxLifetime: 24 * time.Hour}
				c.ProxyProtocol.TrustedCIDRs = []netip.Prefix{
					netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:1::/48"), netip.MustParsePrefix("192.0.2.7/32"),
				}
				c.Runtime = gcpolicy.Policy{GCPercent: gcpolicy.Off, MemoryLimit: gcpolicy.Limit{Percent: 75}}
			},
		},
		{
			name: "anchors",
			want: func(c *Config) {
				c.Listen = "127.0.0.1:8443"
				c.TLS.Certificates = []wstls.CertFile{testCert, testCert}
				bs := backends("127.0.0.1:9001", "127.0.0.1:9002")
				a := defaultHealthCheck()
				a.Path, a.Interval = "/live", 3*time.Second
				b := defaultHealthCheck()
				b.Path, b.Interval, b.UnhealthyThreshold = "/live", 4*time.Second, 5
				c.Pools = []registry.PoolSpec{
					{Name: "a", Backends: bs, Check: a},
					{Name: "b", Backends: bs, Check: b},
				}
				c.Routes = []proxy.Route{{PathPrefix: "/a", Pool: "a"}, {PathPrefix: "/b", Pool: "b"}}
			},
		},
		{
			name: "acme",
			want: func(c *Config) {
				c.Listen = ":443"
				c.TLS = TLS{
					Certificates: []wstls.CertFile{testCert},
					ACME: &wstls.ACMEOptions{
						Domains:         []string{"ws.example.com", "Chat.Example.com."},
						Email:           "ops@example.com",
						CacheDir:        "testdata/good/acme-cache",
						DirectoryURL:    "https://acme-staging-v02.api.letsencrypt.org/directory",
						DirectoryCAFile: "testdata/certs/cert.pem",
						RenewBefore:     720 * time.Hour,
					},
					HTTPListen: ":80",
				}
				c.Pools = []registry.PoolSpec{{Name: "app", Backends: backends("127.0.0.1:9001")}}
				c.Routes = []proxy.Route{{PathPrefix: "/", Pool: "app"}}
			},
		},
		{
			name: "acme_only",
			want: func(c *Config) {
				c.Listen = "127.0.0.1:0"
				c.TLS.ACME = &wstls.ACMEOptions{Domains: []string{"ws.example.com"}, CacheDir: "/var/lib/wsgate/acme", DirectoryURL: "https://acme-v02.api.letsencrypt.org/directory"}
				c.Pools = []registry.PoolSpec{{Name: "app", Backends: backends("127.0.0.1:9001")}}
				c.Routes = []proxy.Route{{PathPrefix: "/", Pool: "app"}}
			},
		},
		{
			name: "ops",
			want: func(c *Config) {
				c.Listen = "127.0.0.1:8443"
				c.TLS.Certificates = []wstls.CertFile{testCert}
				c.Admin = Admin{Listen: "0.0.0.0:9090", TokenFile: "testdata/tokens/admin.token", Token: "0123456789abcdef0123456789abcdef"}
				c.Log.Format = "json"
				c.Runtime = gcpolicy.Policy{GCPercent: 40, MemoryLimit: gcpolicy.Limit{Bytes: 512 << 20}}
				c.Pools = []registry.PoolSpec{{Name: "app", Backends: backends("127.0.0.1:9001")}}
				c.Routes = []proxy.Route{{PathPrefix: "/", Pool: "app"}}
			},
		},
		{
			name: "discover",
			want: func(c *Config) {
				c.Listen = "127.0.0.1:8443"
				c.TLS.Certificates = []wstls.CertFile{testCert}
				c.Pools = []registry.PoolSpec{
					{Name: "dns", Check: defaultHealthCheck(),
						Discover: &registry.Discover{Name: "app.internal", Type: "A", Port: 9001, Interval: 5 * time.Second}},
					{Name: "empty", Check: defaultHealthCheck(),
						Discover: &registry.Discover{Name: "v6.app.internal", Type: "AAAA", Port: 443, Interval: 250 * time.Millisecond, Resolver: "127.0.0.1:53"}},
					{Name: "both", Backends: backends("10.0.0.1:9001"), Check: defaultHealthCheck(),
						Discover: &registry.Discover{Name: "_ws._tcp.app.internal", Type: "SRV", Interval: 5 * time.Second, Resolver: "dns.internal:53"}},
				}
				c.Routes = []proxy.Route{{PathPrefix: "/", Pool: "dns"}}
			},
		},
		{
			name: "flow",
			want: func(c *Config) {
				c.Listen = "127.0.0.1:8443"
				c.TLS.Certificates = []wstls.CertFile{testCert}
				c.Pools = []registry.PoolSpec{{Name: "app", Backends: backends("localhost:9001")}}
				c.Routes = []proxy.Route{{Host: "ws.example.com.", PathPrefix: "/", Pool: "app"}}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "good", tc.name+".yaml")
			got, err := Load(path)
			if err != nil {
				t.Fatalf("Load(%q) error:\n%v", path, err)
			}
			want := defaultConfig(path)
			tc.want(&want)
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("Load(%q) =\n%+v\nwant\n%+v", path, *got, want)
			}
		})
	}
}

// TestParseGoodFilesCovered makes sure no file in testdata/good is left
// out of TestParseGood's table by accident.
func TestParseGoodFilesCovered(t *testing.T) {
	files, _ := filepath.Glob("testdata/good/*.yaml")
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("Load(%q) error:\n%v", f, err)
		}
	}
}

func TestParseAbsoluteCertPaths(t *testing.T) {
	dir := t.TempDir()
	abs, err := filepath.Abs("testdata/certs")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`listen: "127.0.0.1:0"
tls:
  certificates:
    - cert_file: ` + filepath.Join(abs, "cert.pem") + `
      key_file: ` + filepath.Join(abs, "key.pem") + `
pools: [{name: app, backends: [{address: "127.0.0.1:9001"}]}]
routes: [{pool: app}]
`)
	path := filepath.Join(dir, "wsgate.yaml")
	c, err := Parse(path, data)
	if err != nil {
		t.Fatalf("Parse() error:\n%v", err)
	}
	want := []wstls.CertFile{{CertFile: filepath.Join(abs, "cert.pem"), KeyFile: filepath.Join(abs, "key.pem")}}
	if !reflect.DeepEqual(c.TLS.Certificates, want) {
		t.Errorf("Parse() certificates = %+v, want %+v", c.TLS.Certificates, want)
	}
	if c.Path != path {
		t.Errorf("Parse() Path = %q, want %q", c.Path, path)
	}
}

func TestLoadUnreadable(t *testing.T) {
	path := filepath.Join("testdata", "no-such-file.yaml")
	c, err := Load(path)
	if c != nil || err == nil {
		t.Fatalf("Load(%q) = %v, %v; want nil, error", path, c, err)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("Load(%q) error is %T, want *Error", path, err)
	}
	want := "testdata/no-such-file.yaml: cannot read configuration file: no such file or directory"
	if got := err.Error(); got != want {
		t.Errorf("Load(%q) error = %q, want %q", path, got, want)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"full", Error{File: "a.yaml", Line: 3, Col: 5, Key: "routes[0].pool", Msg: "bad"}, "a.yaml:3:5: routes[0].pool: bad"},
		{"no key", Error{File: "a.yaml", Line: 1, Col: 1, Msg: "invalid YAML: x"}, "a.yaml:1:1: invalid YAML: x"},
		{"no position", Error{File: "a.yaml", Msg: "cannot read"}, "a.yaml: cannot read"},
		{"no file", Error{Line: 2, Col: 7, Key: "listen", Msg: "bad"}, "2:7: listen: bad"},
		{"no column", Error{File: "a.yaml", Line: 2, Key: "k", Msg: "m"}, "a.yaml:2:1: k: m"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestExamples checks that every configuration shipped in examples/ is
// accepted.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("Glob(../examples/*.yaml) = %v, %v; want files", files, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			c, err := Load(file)
			if err != nil {
				t.Fatalf("Load(%q) error:\n%v", file, err)
			}
			if len(c.Pools) == 0 || len(c.Routes) == 0 || (len(c.TLS.Certificates) == 0 && c.TLS.ACME == nil) {
				t.Errorf("Load(%q) = %+v; want pools, routes and certificates", file, c)
			}
		})
	}
}

// Options.Certificates stand in for tls.certificates: the document may
// leave them, or the whole tls section, out.
func TestParseWithCertificates(t *testing.T) {
	pair, err := tls.LoadX509KeyPair("testdata/certs/cert.pem", "testdata/certs/key.pem")
	if err != nil {
		t.Fatal(err)
	}
	const rest = "pools: [{name: app, backends: [{address: \"127.0.0.1:9001\"}]}]\nroutes: [{pool: app}]\n"
	tests := []struct {
		name, doc string
		certs     []tls.Certificate
		wantErr   string
	}{
		{name: "no tls section", doc: "listen: \"127.0.0.1:0\"\n" + rest, certs: []tls.Certificate{pair}},
		{name: "tls without certificates", doc: "listen: \"127.0.0.1:0\"\ntls: {http_listen: \":80\"}\n" + rest, certs: []tls.Certificate{pair}},
		{name: "empty certificates", doc: "listen: \"127.0.0.1:0\"\ntls: {certificates: []}\n" + rest, certs: []tls.Certificate{pair}},
		{name: "none at all", doc: "listen: \"127.0.0.1:0\"\n" + rest, wantErr: "mem.yaml:1:1: tls: required key is missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Options{Certificates: tc.certs}.Parse("mem.yaml", []byte(tc.doc))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse() error:\n%v", err)
			}
			if len(c.TLS.Certs) != 1 || len(c.TLS.Certificates) != 0 {
				t.Errorf("Parse() TLS = %+v; want the one in-memory certificate and no files", c.TLS)
			}
		})
	}
}

// Options.AdminListen replaces admin.listen, and is checked like it.
func TestParseAdminListenOverride(t *testing.T) {
	for _, file := range []string{"testdata/good/minimal.yaml", "testdata/good/full.yaml"} {
		c, err := Options{AdminListen: "127.0.0.1:9191"}.Load(file)
		if err != nil {
			t.Fatalf("Load(%q) error:\n%v", file, err)
		}
		if c.Admin.Listen != "127.0.0.1:9191" {
			t.Errorf("Load(%q) admin.listen = %q, want the override", file, c.Admin.Listen)
		}
	}
	_, err := Options{AdminListen: "127.0.0.1"}.Load("testdata/good/minimal.yaml")
	want := `testdata/good/minimal.yaml: admin.listen: invalid listen address "127.0.0.1" given in place of the file's: missing port; use host:port such as "127.0.0.1:8443" or ":8443" (port 0-65535)`
	if err == nil || err.Error() != want {
		t.Errorf("Load with a bad AdminListen: %v\nwant %s", err, want)
	}
}

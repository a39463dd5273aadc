package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
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

func defaultConfig(path string) Config {
	return Config{
		Path:     path,
		Admin:    Admin{Listen: DefaultAdminListen},
		Shutdown: Shutdown{DrainTimeout: DefaultDrainTimeout},
		Tunnels:  Tunnels{WriteTimeout: DefaultWriteTimeout},
		Limits: Limits{
			MaxHeaderBytes: DefaultMaxHeaderBytes,
			HeaderTimeout:  DefaultHeaderTimeout,
			DialTimeout:    DefaultDialTimeout,
			MaxAttempts:    DefaultMaxAttempts,
		},
	}
}

var testCert = Certificate{CertFile: "testdata/certs/cert.pem", KeyFile: "testdata/certs/key.pem"}

func defaultHealthCheck() *HealthCheck {
	return &HealthCheck{
		Path:               DefaultHealthPath,
		Interval:           DefaultHealthInterval,
		Timeout:            DefaultHealthTimeout,
		HealthyThreshold:   DefaultHealthyThreshold,
		UnhealthyThreshold: DefaultUnhealthyThreshold,
	}
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		name string
		want func(c *Config)
	}{
		{
			name: "minimal",
			want: func(c *Config) {
				c.Listen = "127.0.0.1:0"
				c.TLS.Certificates = []Certificate{testCert}
				c.Pools = []Pool{{Name: "app", Backends: []Backend{{Address: "127.0.0.1:9001", Weight: DefaultWeight}}}}
				c.Routes = []Route{{PathPrefix: DefaultPathPrefix, Pool: "app"}}
			},
		},
		{
			name: "full",
			want: func(c *Config) {
				c.Listen = ":8443"
				c.TLS.Certificates = []Certificate{testCert, testCert}
				c.Admin.Listen = "[::1]:9999"
				c.Admin.Pprof = true
				c.Pools = []Pool{
					{
						Name: "chat",
						Backends: []Backend{
							{Address: "10.0.0.1:9001", Weight: 3},
							{Address: "backend-2.internal:9001", Weight: 1},
							{Address: "unix:/run/wsgate/chat.sock", Weight: 1},
						},
						HealthCheck: &HealthCheck{Path: "/ready", Interval: 5 * time.Second, Timeout: 5 * time.Second, HealthyThreshold: 1, UnhealthyThreshold: 4, ExpectedStatus: 204},
						Policy:      "power_of_two",
					},
					{
						Name:     "feed",
						Backends: []Backend{{Address: "127.0.0.1:9101", Weight: 1}},
						HealthCheck: func() *HealthCheck {
							hc := defaultHealthCheck()
							hc.Interval = 2 * time.Second
							return hc
						}(),
					},
					{Name: "42", Backends: []Backend{{Address: "127.0.0.1:9201", Weight: 16}}},
				}
				c.Routes = []Route{
					{Host: "WS.example.com", PathPrefix: "/chat", Pool: "chat", AllowedOrigins: []string{"https://app.example.com", "http://localhost:3000"}},
					{Host: "127.0.0.1", PathPrefix: "/", Pool: "feed", AllowedOrigins: []string{}},
					{Host: "", PathPrefix: "/", Pool: "42"},
				}
				c.Shutdown.DrainTimeout = 90 * time.Second
				c.Limits = Limits{MaxHeaderBytes: 1024, HeaderTimeout: 2 * time.Second, DialTimeout: 250 * time.Millisecond, MaxAttempts: 10, MaxConnections: 5000}
				c.Tunnels.WriteTimeout = 0 // "0" turns it off
			},
		},
		{
			name: "anchors",
			want: func(c *Config) {
				c.Listen = "127.0.0.1:8443"
				c.TLS.Certificates = []Certificate{testCert, testCert}
				backends := []Backend{{Address: "127.0.0.1:9001", Weight: 1}, {Address: "127.0.0.1:9002", Weight: 1}}
				a := defaultHealthCheck()
				a.Path, a.Interval = "/live", 3*time.Second
				b := defaultHealthCheck()
				b.Path, b.Interval, b.UnhealthyThreshold = "/live", 4*time.Second, 5
				c.Pools = []Pool{
					{Name: "a", Backends: backends, HealthCheck: a},
					{Name: "b", Backends: backends, HealthCheck: b},
				}
				c.Routes = []Route{{PathPrefix: "/a", Pool: "a"}, {PathPrefix: "/b", Pool: "b"}}
			},
		},
		{
			name: "acme",
			want: func(c *Config) {
				c.Listen = ":443"
				c.TLS = TLS{
					Certificates: []Certificate{testCert},
					ACME: &ACME{
						Domains:         []string{"ws.example.com", "Chat.Example.com."},
						Email:           "ops@example.com",
						CacheDir:        "testdata/good/acme-cache",
						DirectoryURL:    "https://acme-staging-v02.api.letsencrypt.org/directory",
						DirectoryCAFile: "testdata/certs/cert.pem",
						RenewBefore:     720 * time.Hour,
					},
					HTTPListen: ":80",
				}
				c.Pools = []Pool{{Name: "app", Backends: []Backend{{Address: "127.0.0.1:9001", Weight: 1}}}}
				c.Routes = []Route{{PathPrefix: "/", Pool: "app"}}
			},
		},
		{
			name: "acme_only",
			want: func(c *Config) {
				c.Listen = "127.0.0.1:0"
				c.TLS.ACME = &ACME{Domains: []string{"ws.example.com"}, CacheDir: "/var/lib/wsgate/acme", DirectoryURL: DefaultACMEDirectory}
				c.Pools = []Pool{{Name: "app", Backends: []Backend{{Address: "127.0.0.1:9001", Weight: 1}}}}
				c.Routes = []Route{{PathPrefix: "/", Pool: "app"}}
			},
		},
		{
			name: "flow",
			want: func(c *Config) {
				c.Listen = "127.0.0.1:8443"
				c.TLS.Certificates = []Certificate{testCert}
				c.Pools = []Pool{{Name: "app", Backends: []Backend{{Address: "localhost:9001", Weight: 1}}}}
				c.Routes = []Route{{Host: "ws.example.com.", PathPrefix: "/", Pool: "app"}}
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
	want := []Certificate{{CertFile: filepath.Join(abs, "cert.pem"), KeyFile: filepath.Join(abs, "key.pem")}}
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

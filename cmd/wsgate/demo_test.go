package main

import (
	"context"
	"crypto/tls"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wsgate/wsgate/healthcheck"
	"github.com/wsgate/wsgate/proxy"
	wstls "github.com/wsgate/wsgate/tls"
)

// The demo's document goes through config.Parse: its defaults and checks
// are those of any file.
func TestDemoConfig(t *testing.T) {
	certPEM, keyPEM, err := wstls.GenerateSelfSigned([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	addrs := demoAddrs{Listen: "127.0.0.1:8443", Admin: "127.0.0.1:9090", Backends: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}}
	cfg, _, err := demoConfig(addrs, pair)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != addrs.Listen || cfg.Admin.Listen != addrs.Admin || len(cfg.TLS.Certs) != 1 || len(cfg.TLS.Certificates) != 0 {
		t.Errorf("listen %q, admin %q, TLS %+v; want the flags' addresses and the in-memory certificate", cfg.Listen, cfg.Admin.Listen, cfg.TLS)
	}
	if len(cfg.Pools) != 2 || len(cfg.Pools[0].Backends) != 3 || len(cfg.Pools[1].Backends) != 1 || cfg.Pools[1].Backends[0].Address != addrs.Backends[0] {
		t.Fatalf("pools = %+v; want echo over the three backends and chat on the first", cfg.Pools)
	}
	for _, p := range cfg.Pools {
		if p.Check == nil || *p.Check != healthcheck.DefaultCheck() {
			t.Errorf("pool %s check = %+v, want the defaults", p.Name, p.Check)
		}
		for _, b := range p.Backends {
			if b.Weight != 1 {
				t.Errorf("pool %s backend %s weight %d, want the default 1", p.Name, b.Address, b.Weight)
			}
		}
	}
	if want := []proxy.Route{{PathPrefix: "/ws/chat", Pool: "chat"}, {PathPrefix: "/", Pool: "echo"}}; !reflect.DeepEqual(cfg.Routes, want) {
		t.Errorf("routes = %+v, want %+v", cfg.Routes, want)
	}
	if cfg.Shutdown.DrainTimeout != 3*time.Second || cfg.Limits.DialTimeout != proxy.DefaultDialTimeout {
		t.Errorf("drain timeout %v, dial timeout %v; want 3s and the proxy's default", cfg.Shutdown.DrainTimeout, cfg.Limits.DialTimeout)
	}

	// A flag value the document cannot hold is an error of the document,
	// not a broken YAML file.
	addrs.Listen = `bad" address`
	if _, _, err := demoConfig(addrs, pair); err == nil || !strings.Contains(err.Error(), `listen: invalid listen address "bad\" address"`) {
		t.Errorf("demoConfig with listen %q: %v; want an invalid listen address error", addrs.Listen, err)
	}
}

// A bad flag value is reported like a config error, and the demo exits 1.
func TestDemoBadListen(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wsgateBin, "demo", "-listen", "127.0.0.1", "-admin", "127.0.0.1:0")
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("demo -listen 127.0.0.1: exit %d, want 1", code)
	}
	if want := `listen: invalid listen address "127.0.0.1": missing port`; !strings.Contains(string(out), want) {
		t.Errorf("demo -listen 127.0.0.1 said %q; want %q", out, want)
	}
}

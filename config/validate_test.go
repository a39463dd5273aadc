package config

import (
	"slices"
	"testing"

	"github.com/wsgate/wsgate/balancer"
)

func TestCheckAddresses(t *testing.T) {
	tests := []struct {
		name  string
		check func(string) string
		in    string
		valid bool
	}{
		{"listen ipv4", checkListenAddr, "127.0.0.1:8443", true},
		{"listen any host", checkListenAddr, ":8443", true},
		{"listen port 0", checkListenAddr, "127.0.0.1:0", true},
		{"listen ipv6", checkListenAddr, "[::1]:8443", true},
		{"listen ipv6 zone", checkListenAddr, "[fe80::1%eth0]:8443", true},
		{"listen name", checkListenAddr, "localhost:8443", true},
		{"listen max port", checkListenAddr, "localhost:65535", true},
		{"listen no port", checkListenAddr, "127.0.0.1", false},
		{"listen empty port", checkListenAddr, "127.0.0.1:", false},
		{"listen port too big", checkListenAddr, "127.0.0.1:65536", false},
		{"listen negative port", checkListenAddr, "127.0.0.1:-1", false},
		{"listen signed port", checkListenAddr, "127.0.0.1:+80", false},
		{"listen service name", checkListenAddr, "127.0.0.1:https", false},
		{"listen scheme", checkListenAddr, "https://127.0.0.1:8443", false},
		{"listen empty", checkListenAddr, "", false},
		{"listen bad host", checkListenAddr, "a b:80", false},
		{"listen bracketed name", checkListenAddr, "[localhost]:80", false},
		{"listen bracketed ipv4", checkListenAddr, "[127.0.0.1]:80", false},
		{"listen ipv4 zone", checkListenAddr, "127.0.0.1%eth0:80", false},
		{"backend ipv4", checkBackendAddr, "10.0.0.1:9001", true},
		{"backend name", checkBackendAddr, "app-1.internal:9001", true},
		{"backend unix", checkBackendAddr, "unix:/run/app.sock", true},
		{"backend port 0", checkBackendAddr, "10.0.0.1:0", false},
		{"backend no host", checkBackendAddr, ":9001", false},
		{"backend unix relative", checkBackendAddr, "unix:app.sock", false},
		{"backend unix url", checkBackendAddr, "unix:///run/app.sock", false},
		{"backend unix empty", checkBackendAddr, "unix:", false},
		{"backend ws scheme", checkBackendAddr, "ws://10.0.0.1:9001", false},
		{"route host any", checkRouteHost, "", true},
		{"route host name", checkRouteHost, "ws.example.com", true},
		{"route host fqdn", checkRouteHost, "ws.example.com.", true},
		{"route host ipv4", checkRouteHost, "127.0.0.1", true},
		{"route host ipv6", checkRouteHost, "::1", true},
		{"route host port", checkRouteHost, "ws.example.com:443", false},
		{"route host scheme", checkRouteHost, "wss://ws.example.com", false},
		{"route host slash", checkRouteHost, "ws.example.com/", false},
		{"route host wildcard", checkRouteHost, "*.example.com", false},
		{"route host dot", checkRouteHost, ".", false},
		{"route host empty label", checkRouteHost, "a..b", false},
		{"origin https", checkOrigin, "https://app.example.com", true},
		{"origin port", checkOrigin, "http://localhost:3000", true},
		{"origin ipv6", checkOrigin, "http://[::1]:3000", true},
		{"origin slash", checkOrigin, "https://app.example.com/", false},
		{"origin path", checkOrigin, "https://app.example.com/x", false},
		{"origin query", checkOrigin, "https://app.example.com?", false},
		{"origin fragment", checkOrigin, "https://app.example.com#", false},
		{"origin user", checkOrigin, "https://u@app.example.com", false},
		{"origin no scheme", checkOrigin, "app.example.com", false},
		{"origin wss", checkOrigin, "wss://app.example.com", false},
		{"origin star", checkOrigin, "*", false},
		{"origin port 0", checkOrigin, "https://app.example.com:0", false},
		{"origin empty port", checkOrigin, "https://:443", false},
		{"origin colon without port", checkOrigin, "https://app.example.com:", false},
		{"origin zone", checkOrigin, "http://[fe80::1%25eth0]:80", false},
		{"cidr ipv4", checkCIDR, "10.0.0.0/8", true},
		{"cidr one address", checkCIDR, "192.0.2.7/32", true},
		{"cidr everything", checkCIDR, "0.0.0.0/0", true},
		{"cidr ipv6", checkCIDR, "2001:db8::/32", true},
		{"cidr ipv6 upper case", checkCIDR, "2001:DB8::/32", true},
		{"cidr no length", checkCIDR, "192.0.2.7", false},
		{"cidr host bits", checkCIDR, "10.1.2.3/8", false},
		{"cidr too long", checkCIDR, "10.0.0.0/33", false},
		{"cidr leading zero", checkCIDR, "010.0.0.0/8", false},
		{"cidr mapped", checkCIDR, "::ffff:10.0.0.0/104", false},
		{"cidr zone", checkCIDR, "fe80::%eth0/64", false},
		{"cidr name", checkCIDR, "lb.internal/32", false},
		{"cidr empty", checkCIDR, "", false},
		{"path root", checkPathPrefix, "/", true},
		{"path ws", checkPathPrefix, "/ws/", true},
		{"path relative", checkPathPrefix, "ws", false},
		{"path space", checkPathPrefix, "/a b", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.check(tc.in)
			if (got == "") != tc.valid {
				t.Errorf("check(%q) = %q, want valid %v", tc.in, got, tc.valid)
			}
		})
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"intervall", "interval"},
		{"Interval", "interval"},
		{"healthythreshold", "healthy_threshold"},
		{"zzz", ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := suggest(tc.in, healthKeys); got != tc.want {
				t.Errorf("suggest(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestPolicies: pools[].policy accepts exactly the balancer's policy names,
// its default (what "" means to it) first.
func TestPolicies(t *testing.T) {
	want := []string{balancer.PolicyLeastConnections, balancer.PolicyPowerOfTwo}
	if !slices.Equal(policies, want) {
		t.Errorf("policies = %q, want the balancer's %q", policies, want)
	}
}

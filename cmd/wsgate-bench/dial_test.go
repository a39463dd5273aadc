package main

import (
	"net/netip"
	"slices"
	"testing"
)

func TestParseSourceIPs(t *testing.T) {
	t.Parallel()
	addrs := func(s ...string) []netip.Addr {
		out := make([]netip.Addr, len(s))
		for i, a := range s {
			out[i] = netip.MustParseAddr(a)
		}
		return out
	}
	tests := []struct {
		name    string
		spec    string
		want    []netip.Addr
		wantLen int
		wantErr bool
	}{
		{name: "empty", spec: "", want: nil},
		{name: "none", spec: "none", want: nil},
		{name: "one address", spec: "127.0.0.2", want: addrs("127.0.0.2")},
		{name: "range", spec: "127.0.0.2-127.0.0.4", want: addrs("127.0.0.2", "127.0.0.3", "127.0.0.4")},
		{name: "list and range with spaces", spec: "127.0.0.9, 127.0.0.254 - 127.0.1.1", want: addrs("127.0.0.9", "127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1")},
		{name: "one-address range", spec: "10.0.0.1-10.0.0.1", want: addrs("10.0.0.1")},
		{name: "ipv6 range", spec: "::1-::3", want: addrs("::1", "::2", "::3")},
		{name: "default loopback", spec: defaultLoopbackSources, wantLen: 253},
		{name: "backwards", spec: "127.0.0.9-127.0.0.2", wantErr: true},
		{name: "mixed families", spec: "127.0.0.1-::1", wantErr: true},
		{name: "not an address", spec: "127.0.0.300", wantErr: true},
		{name: "empty item", spec: "127.0.0.1,", wantErr: true},
		{name: "hostname", spec: "localhost", wantErr: true},
		{name: "too many", spec: "10.0.0.0-10.1.0.0", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSourceIPs(tc.spec)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseSourceIPs(%q) error = %v, want error %v", tc.spec, err, tc.wantErr)
			}
			if tc.wantLen > 0 {
				if len(got) != tc.wantLen {
					t.Errorf("parseSourceIPs(%q) gave %d addresses, want %d", tc.spec, len(got), tc.wantLen)
				}
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("parseSourceIPs(%q) = %v, want %v", tc.spec, got, tc.want)
			}
		})
	}
}

func TestIsLoopback4(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.9.9.9": true, "::1": false, "localhost": false, "10.0.0.1": false,
	} {
		if got := isLoopback4(host); got != want {
			t.Errorf("isLoopback4(%q) = %v, want %v", host, got, want)
		}
	}
}

package tls

import (
	"crypto/tls"
	"testing"
	"time"
)

func TestCertSetLookup(t *testing.T) {
	t.Parallel()
	now := time.Now()
	entry := func(hosts ...string) *certEntry {
		c := validPair(t, hosts...).tlsCert(t)
		e, err := newCertEntry(c, hosts[0], now)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	def := entry("default.example.com")
	a := entry("A.Example.com.", "a.example.com")
	wild := entry("*.Wild.example.com")
	wild2 := entry("*.wild.example.com", "exact.wild.example.com")
	set := newCertSet([]*certEntry{def, a, wild, wild2})

	tests := []struct {
		sni  string
		want *certEntry
	}{
		{sni: "", want: def},
		{sni: "default.example.com", want: def},
		{sni: "a.example.com", want: a},
		{sni: "A.EXAMPLE.COM", want: a},
		{sni: "a.example.com.", want: a},
		{sni: "x.wild.example.com", want: wild},
		{sni: "X.WILD.EXAMPLE.COM.", want: wild},
		{sni: "exact.wild.example.com", want: wild2},
		{sni: "x.y.wild.example.com", want: def},
		{sni: "wild.example.com", want: def},
		{sni: ".wild.example.com", want: def},
		{sni: "example.com", want: def},
		{sni: "nothing.test", want: def},
	}
	for _, tc := range tests {
		t.Run(tc.sni, func(t *testing.T) {
			t.Parallel()
			if got := set.lookup(&tls.ClientHelloInfo{ServerName: tc.sni}); got != tc.want {
				t.Errorf("lookup(%q) = %s, want %s", tc.sni, got.source, tc.want.source)
			}
		})
	}
}

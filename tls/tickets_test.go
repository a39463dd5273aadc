package tls

import (
	"bytes"
	"crypto/tls"
	"testing"
	"time"
)

// resumes dials addr twice with one session cache (echoing once, so that
// the client takes the ticket that TLS 1.3 sends after the handshake) and
// reports whether the second connection resumed.
func resumes(t *testing.T, first, second string, client *tls.Config) bool {
	t.Helper()
	c, err := dial(t, first, client)
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(c, "take the ticket"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c2, err := dial(t, second, client)
	if err != nil {
		t.Fatal(err)
	}
	return c2.ConnectionState().DidResume
}

func TestSessionResumption(t *testing.T) {
	pair := validPair(t, "localhost")
	secret := bytes.Repeat([]byte{7}, MinTicketSecret)
	for _, tc := range []struct {
		name       string
		a, b       TicketOptions
		sameServer bool // dial a twice instead of a, then b
		want       bool
	}{
		{"one process, its own keys", TicketOptions{}, TicketOptions{}, true, true},
		{"two processes, their own keys", TicketOptions{}, TicketOptions{}, false, false},
		{"two processes, one secret", TicketOptions{Secret: secret}, TicketOptions{Secret: secret}, false, true},
		{"two processes, other secrets", TicketOptions{Secret: secret}, TicketOptions{Secret: bytes.Repeat([]byte{8}, 40)}, false, false},
		{"disabled", TicketOptions{Disabled: true}, TicketOptions{}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := serve(t, newTestProvider(t, Options{Certs: []tls.Certificate{pair.tlsCert(t)}, Tickets: tc.a}).TLSConfig())
			b := a
			if !tc.sameServer {
				b = serve(t, newTestProvider(t, Options{Certs: []tls.Certificate{pair.tlsCert(t)}, Tickets: tc.b}).TLSConfig())
			}
			client := &tls.Config{RootCAs: roots(pair), ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
			if got := resumes(t, a, b, client); got != tc.want {
				t.Errorf("resumed = %v, want %v", got, tc.want)
			}
		})
	}
}

// The derived keys rotate: a ticket sealed in one period opens in the
// following ones for TicketLifetime, not after.
func TestTicketKeysRotate(t *testing.T) {
	pair := validPair(t, "localhost")
	o := TicketOptions{Secret: bytes.Repeat([]byte{9}, MinTicketSecret), Rotate: time.Hour}
	start := time.Date(2026, 11, 28, 10, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		later time.Duration
		want  bool
	}{
		{0, true},
		{2 * time.Hour, true},
		{TicketLifetime - time.Hour, true},
		{TicketLifetime + 2*time.Hour, false},
	} {
		issuing, opening := pair.serverConfig(t), pair.serverConfig(t)
		o.apply(issuing, start)
		o.apply(opening, start.Add(tc.later))
		client := &tls.Config{RootCAs: roots(pair), ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(8)}
		if got := resumes(t, serve(t, issuing), serve(t, opening), client); got != tc.want {
			t.Errorf("a ticket of %v resumed %v later: %v, want %v", start, tc.later, got, tc.want)
		}
	}
	if _, err := NewProvider(Options{Certs: []tls.Certificate{pair.tlsCert(t)}, Tickets: TicketOptions{Secret: []byte("short")}}); err == nil {
		t.Error("NewProvider() accepted a 5-byte ticket secret")
	}
}

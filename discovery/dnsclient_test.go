package discovery

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/wsgate/wsgate/internal/dnstest"
)

// TestDNSClient asks a real DNS server on loopback.
func TestDNSClient(t *testing.T) {
	srv := dnstest.Start(t)
	srv.SetA("app.test", 30, "127.0.0.2", "127.0.0.3")
	srv.SetAAAA("v6.test", 0, "::1")
	srv.SetSRV("_ws._tcp.app.test", 60,
		dnstest.SRV{Target: "a.app.test", Port: 9001, Priority: 10, Weight: 5},
		dnstest.SRV{Target: "b.app.test", Port: 9002, Priority: 20})
	srv.SetA("broken.test", 30, "127.0.0.9")
	srv.SetRcode("broken.test", dns.RcodeServerFailure)

	a := func(s string) Record { return Record{Addr: netip.MustParseAddr(s)} }
	for _, tc := range []struct {
		name    string
		q       Question
		want    []Record
		ttl     time.Duration
		wantErr string
	}{
		{"A", Question{Name: "app.test", Type: TypeA}, []Record{a("127.0.0.2"), a("127.0.0.3")}, 30 * time.Second, ""},
		{"fully qualified", Question{Name: "app.test.", Type: TypeA}, []Record{a("127.0.0.2"), a("127.0.0.3")}, 30 * time.Second, ""},
		{"AAAA, TTL 0 counts as MinRefresh", Question{Name: "v6.test", Type: TypeAAAA}, []Record{a("::1")}, MinRefresh, ""},
		{"SRV", Question{Name: "_ws._tcp.app.test", Type: TypeSRV}, []Record{
			{Target: "a.app.test.", Port: 9001, Priority: 10, Weight: 5},
			{Target: "b.app.test.", Port: 9002, Priority: 20},
		}, time.Minute, ""},
		{"NXDOMAIN is empty", Question{Name: "nope.test", Type: TypeA}, nil, 0, ""},
		{"no data is empty", Question{Name: "app.test", Type: TypeAAAA}, nil, 0, ""},
		{"SERVFAIL is an error", Question{Name: "broken.test", Type: TypeA}, nil, 0, "SERVFAIL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.Server = srv.Addr()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := DNSClient{}.Resolve(ctx, tc.q)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Resolve(%+v) error = %v, want one saying %s", tc.q, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%+v) error = %v", tc.q, err)
			}
			if !slices.Equal(got.Records, tc.want) || got.TTL != tc.ttl {
				t.Errorf("Resolve(%+v) = %+v, want %+v with TTL %v", tc.q, got, tc.want, tc.ttl)
			}
		})
	}
}

// An answer too large for UDP comes truncated and is asked again over TCP.
func TestDNSClientTCPOnTruncation(t *testing.T) {
	srv := dnstest.Start(t)
	var ips []string
	// 100 A records, about 1,600 bytes: more than udpSize, so a real server
	// would truncate them over UDP as this one does.
	for i := range 100 {
		ips = append(ips, netip.AddrFrom4([4]byte{127, 0, 1, byte(i)}).String())
	}
	srv.SetA("big.test", 30, ips...)
	srv.TruncateUDP(true)
	got, err := DNSClient{}.Resolve(context.Background(), Question{Server: srv.Addr(), Name: "big.test", Type: TypeA})
	if err != nil {
		t.Fatalf("Resolve() error = %v", err)
	}
	if len(got.Records) != len(ips) {
		t.Errorf("Resolve() got %d records, want %d", len(got.Records), len(ips))
	}
	if n := srv.Asked("big.test", dns.TypeA); n != 2 {
		t.Errorf("server was asked %d times, want 2 (UDP, then TCP)", n)
	}
}

// A server that is gone is an error, at once: the port refuses.
func TestDNSClientServerGone(t *testing.T) {
	srv := dnstest.Start(t)
	srv.SetA("app.test", 30, "127.0.0.2")
	srv.Stop()
	start := time.Now()
	_, err := DNSClient{}.Resolve(context.Background(), Question{Server: srv.Addr(), Name: "app.test", Type: TypeA})
	if err == nil {
		t.Fatal("Resolve() of a stopped server: nil error")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Resolve() took %v to fail, want a refusal at once", took)
	}
	srv.Restart()
	if got, err := (DNSClient{}).Resolve(context.Background(), Question{Server: srv.Addr(), Name: "app.test", Type: TypeA}); err != nil || len(got.Records) != 1 {
		t.Errorf("Resolve() after Restart = %+v, %v; want the record", got, err)
	}
}

// A server that never answers holds a lookup only until its context ends,
// deadline or not (a shutdown cancels).
func TestDNSClientCancel(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = DNSClient{}.Resolve(ctx, Question{Server: silent.LocalAddr().String(), Name: "app.test", Type: TypeA})
	if err == nil {
		t.Fatal("Resolve() of a silent server: nil error")
	}
	// miekg/dns's own read timeout is 2 s.
	if took := time.Since(start); took > time.Second {
		t.Errorf("Resolve() returned %v after it began, want soon after the cancel at 50ms", took)
	}
}

// Without a server, questions go to the system's resolver, which reads the
// hosts file.
func TestDNSClientSystem(t *testing.T) {
	got, err := DNSClient{}.Resolve(context.Background(), Question{Name: "localhost", Type: TypeA})
	if err != nil {
		t.Fatalf("Resolve(localhost) error = %v", err)
	}
	if !slices.Contains(got.Records, Record{Addr: netip.MustParseAddr("127.0.0.1")}) || got.TTL != 0 {
		t.Errorf("Resolve(localhost) = %+v, want 127.0.0.1 and no TTL", got)
	}
}

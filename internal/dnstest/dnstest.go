// Package dnstest runs a real DNS server on loopback for tests: UDP and
// TCP on one port, answering from records the test sets and changes while
// it runs, and able to stop answering and come back on the same address.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// SRV is one SRV record to serve.
type SRV struct {
	Target                 string
	Port, Priority, Weight uint16
}

// Server is a DNS server on 127.0.0.1. Its methods are safe for
// concurrent use.
type Server struct {
	t    testing.TB
	addr string

	mu       sync.Mutex
	records  map[question][]dns.RR
	rcodes   map[string]int // by name: answer every question with it
	truncate bool           // answer over UDP with TC set and no records
	asked    map[question]int
	running  []*running
}

type question struct {
	name  string
	qtype uint16
}

type running struct {
	srv  *dns.Server
	done chan struct{}
}

// Start runs a server on a free port of 127.0.0.1, over UDP and TCP, until
// the test ends. It knows no name at first: every question gets NXDOMAIN.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, records: make(map[question][]dns.RR), rcodes: make(map[string]int), asked: make(map[question]int)}
	var err error
	for range 10 { // the TCP port may be taken when the UDP one is free
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			break
		}
		s.addr = pc.LocalAddr().String()
		var ln net.Listener
		if ln, err = net.Listen("tcp", s.addr); err != nil {
			pc.Close()
			continue
		}
		s.serve(pc, ln)
		break
	}
	if err != nil {
		t.Fatalf("dnstest: listen: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

func (s *Server) serve(pc net.PacketConn, ln net.Listener) {
	h := dns.HandlerFunc(s.answer)
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		r := &running{srv: srv, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			_ = srv.ActivateAndServe()
		}()
		<-started
		s.running = append(s.running, r)
	}
}

// Stop stops answering: the port is closed, so a question over UDP is
// refused (ICMP port unreachable) and a TCP connection too.
func (s *Server) Stop() {
	s.mu.Lock()
	rs := s.running
	s.running = nil
	s.mu.Unlock()
	for _, r := range rs {
		_ = r.srv.Shutdown()
		<-r.done
		if r.srv.PacketConn != nil {
			_ = r.srv.PacketConn.Close()
		}
	}
}

// Restart answers again, on the same address, after Stop.
func (s *Server) Restart() {
	s.t.Helper()
	pc, err := net.ListenPacket("udp", s.addr)
	if err != nil {
		s.t.Fatalf("dnstest: listen again on %s: %v", s.addr, err)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		pc.Close()
		s.t.Fatalf("dnstest: listen again on %s: %v", s.addr, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serve(pc, ln)
}

// SetA serves A records for name with ttl (seconds), replacing any; no
// address leaves name with no A record (NOERROR, no data, as long as the
// name has other records; NXDOMAIN otherwise).
func (s *Server) SetA(name string, ttl uint32, ips ...string) {
	s.setAddrs(name, dns.TypeA, ttl, ips)
}

// SetAAAA serves AAAA records for name, as SetA does A records.
func (s *Server) SetAAAA(name string, ttl uint32, ips ...string) {
	s.setAddrs(name, dns.TypeAAAA, ttl, ips)
}

func (s *Server) setAddrs(name string, qtype uint16, ttl uint32, ips []string) {
	s.t.Helper()
	hdr := dns.RR_Header{Name: dns.Fqdn(name), Rrtype: qtype, Class: dns.ClassINET, Ttl: ttl}
	rrs := make([]dns.RR, 0, len(ips))
	for _, ip := range ips {
		a := net.ParseIP(ip)
		if a == nil {
			s.t.Fatalf("dnstest: %q is not an IP address", ip)
		}
		if qtype == dns.TypeA {
			rrs = append(rrs, &dns.A{Hdr: hdr, A: a.To4()})
		} else {
			rrs = append(rrs, &dns.AAAA{Hdr: hdr, AAAA: a.To16()})
		}
	}
	s.set(name, qtype, rrs)
}

// SetSRV serves SRV records for name, replacing any.
func (s *Server) SetSRV(name string, ttl uint32, recs ...SRV) {
	hdr := dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl}
	rrs := make([]dns.RR, 0, len(recs))
	for _, r := range recs {
		rrs = append(rrs, &dns.SRV{Hdr: hdr, Target: dns.Fqdn(r.Target), Port: r.Port, Priority: r.Priority, Weight: r.Weight})
	}
	s.set(name, dns.TypeSRV, rrs)
}

func (s *Server) set(name string, qtype uint16, rrs []dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[question{key(name), qtype}] = rrs
}

// SetRcode answers every question about name with rcode (such as
// dns.RcodeServerFailure); dns.RcodeSuccess goes back to the records.
func (s *Server) SetRcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcodes[key(name)] = rcode
}

// TruncateUDP makes every answer over UDP come truncated (TC set, no
// records), as one too large for a datagram does; TCP answers in full.
func (s *Server) TruncateUDP(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncate = on
}

// Asked returns how many questions of qtype (dns.TypeA, ...) about name
// came, over UDP and TCP together.
func (s *Server) Asked(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[question{key(name), qtype}]
}

func key(name string) string { return strings.ToLower(dns.Fqdn(name)) }

func (s *Server) answer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := question{key(r.Question[0].Name), r.Question[0].Qtype}
	udp := w.LocalAddr().Network() == "udp"
	s.mu.Lock()
	s.asked[q]++
	rcode, hasRcode := s.rcodes[q.name]
	rrs := s.records[q]
	known := false
	for k, v := range s.records {
		known = known || (k.name == q.name && len(v) > 0)
	}
	truncate := s.truncate && udp
	s.mu.Unlock()

	switch {
	case hasRcode && rcode != dns.RcodeSuccess:
		m.Rcode = rcode
	case truncate:
		m.Truncated = true
	case !known:
		m.Rcode = dns.RcodeNameError
	default:
		m.Answer = append(m.Answer, rrs...)
	}
	// An error here is a client gone before its answer: nothing to do.
	_ = w.WriteMsg(m)
}

package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// udpSize is the EDNS0 buffer size offered: the DNS flag day 2020 value,
// which avoids IP fragmentation. Larger answers come truncated and are
// asked again over TCP.
const udpSize = 1232

// DNSClient is the Resolver wsgate uses. A Question with a Server is sent
// to that server over UDP with github.com/miekg/dns, and again over TCP
// when the answer comes truncated; its answer carries the records' TTL. A
// Question without one goes to the system's resolver (net.Resolver: the
// hosts file, resolv.conf), which does not tell TTLs. The zero value is
// ready to use.
type DNSClient struct {
	// System answers Questions without a Server; nil means
	// net.DefaultResolver.
	System *net.Resolver
}

// qtype is the DNS type of one of ours, or 0.
func qtype(t string) uint16 {
	switch t {
	case TypeA:
		return dns.TypeA
	case TypeAAAA:
		return dns.TypeAAAA
	case TypeSRV:
		return dns.TypeSRV
	}
	return 0
}

// Resolve asks q.
func (c DNSClient) Resolve(ctx context.Context, q Question) (Answer, error) {
	qtype := qtype(q.Type)
	if qtype == 0 {
		return Answer{}, fmt.Errorf("unknown record type %q", q.Type)
	}
	if q.Server == "" {
		return c.system(ctx, q)
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(q.Name), qtype)
	m.SetEdns0(udpSize, false)
	r, err := exchange(ctx, "udp", m, q.Server)
	if err == nil && r.Truncated {
		r, err = exchange(ctx, "tcp", m, q.Server)
	}
	if err != nil {
		return Answer{}, err
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return Answer{}, fmt.Errorf("server %s answered %s", q.Server, dns.RcodeToString[r.Rcode])
	}
	var ans Answer
	var ttl uint32
	for _, rr := range r.Answer {
		if rr.Header().Rrtype != qtype {
			continue // the CNAMEs on the way
		}
		var rec Record
		switch v := rr.(type) {
		case *dns.A:
			rec.Addr, _ = netip.AddrFromSlice(v.A.To4())
		case *dns.AAAA:
			rec.Addr, _ = netip.AddrFromSlice(v.AAAA.To16())
		case *dns.SRV:
			rec = Record{Target: v.Target, Port: v.Port, Priority: v.Priority, Weight: v.Weight}
		}
		if len(ans.Records) == 0 || rr.Header().Ttl < ttl {
			ttl = rr.Header().Ttl
		}
		ans.Records = append(ans.Records, rec)
	}
	if len(ans.Records) > 0 {
		ans.TTL = max(time.Duration(ttl)*time.Second, MinRefresh)
	}
	return ans, nil
}

// exchange sends m to server over network and returns the reply. It
// returns as soon as ctx is done.
func exchange(ctx context.Context, network string, m *dns.Msg, server string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, UDPSize: udpSize}
	conn, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, fmt.Errorf("ask %s over %s: %w", server, network, err)
	}
	defer conn.Close()
	// miekg/dns only honours ctx's deadline: end the exchange on a
	// cancellation too (a shutdown).
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	r, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		return nil, fmt.Errorf("ask %s over %s: %w", server, network, err)
	}
	return r, nil
}

// system asks the system's resolver.
func (c DNSClient) system(ctx context.Context, q Question) (Answer, error) {
	r := c.System
	if r == nil {
		r = net.DefaultResolver
	}
	var ans Answer
	if q.Type == TypeSRV {
		_, srvs, err := r.LookupSRV(ctx, "", "", q.Name)
		if err != nil {
			return ans, notFoundIsEmpty(err)
		}
		for _, s := range srvs {
			ans.Records = append(ans.Records, Record{Target: s.Target, Port: s.Port, Priority: s.Priority, Weight: s.Weight})
		}
		return ans, nil
	}
	network := "ip4"
	if q.Type == TypeAAAA {
		network = "ip6"
	}
	addrs, err := r.LookupNetIP(ctx, network, q.Name)
	if err != nil {
		return ans, notFoundIsEmpty(err)
	}
	for _, a := range addrs {
		ans.Records = append(ans.Records, Record{Addr: a.Unmap()})
	}
	return ans, nil
}

// notFoundIsEmpty maps the system resolver's "no such host" (NXDOMAIN, or
// no record of the type) to an empty answer, and keeps other errors.
func notFoundIsEmpty(err error) error {
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return nil
	}
	return err
}

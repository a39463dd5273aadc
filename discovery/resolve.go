package discovery

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/wsgate/wsgate/registry"
)

// The record types a pool may discover (registry.Discover.Type).
const (
	TypeA    = "A"
	TypeAAAA = "AAAA"
	TypeSRV  = "SRV"
)

// Types returns the record types, in the order messages list them.
func Types() []string { return []string{TypeA, TypeAAAA, TypeSRV} }

const (
	// DefaultInterval is how often a name is resolved again when the
	// config says nothing (pools[].discover.interval).
	DefaultInterval = 5 * time.Second
	// MinRefresh is the shortest wait between two lookups that a short
	// TTL can bring about; a TTL of 0 counts as MinRefresh.
	MinRefresh = time.Second
	// QuestionTimeout bounds each question asked of a resolver (an SRV
	// lookup asks one for the records and two for each target).
	QuestionTimeout = 2 * time.Second
)

// Question is one DNS question.
type Question struct {
	// Server is the host:port of the DNS server to ask; "" means the
	// system's resolver.
	Server string
	// Name is the name asked about.
	Name string
	// Type is TypeA, TypeAAAA or TypeSRV.
	Type string
}

// Record is one record of an answer: an address for A and AAAA, the other
// fields for SRV.
type Record struct {
	Addr                   netip.Addr
	Target                 string
	Port, Priority, Weight uint16
}

// Answer is a resolver's answer to a Question.
type Answer struct {
	// Records are the records of the type asked for. None (and a nil
	// error) means the name has none: NXDOMAIN, or NOERROR without data.
	Records []Record
	// TTL is the lowest TTL of Records, or 0 when the resolver does not
	// tell (the system's).
	TTL time.Duration
}

// Resolver answers DNS questions. Errors are for questions that got no
// answer (timeouts, unreachable servers, SERVFAIL, REFUSED); a name with
// no records is an empty Answer. It must honour ctx's deadline and be safe
// for concurrent use. DNSClient is the one wsgate uses; tests use a
// ResolverFunc.
type Resolver interface {
	Resolve(ctx context.Context, q Question) (Answer, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, q Question) (Answer, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, q Question) (Answer, error) { return f(ctx, q) }

var (
	_ Resolver = ResolverFunc(nil)
	_ Resolver = DNSClient{}
)

// resolve returns the backends spec's name resolves to now, in address
// order, and how long the answer may be kept (0: no TTL known). No
// backends and a nil error is an empty answer.
func resolve(ctx context.Context, r Resolver, spec registry.Discover) ([]registry.BackendSpec, time.Duration, error) {
	switch spec.Type {
	case TypeA, TypeAAAA:
		ans, err := ask(ctx, r, Question{Server: spec.Resolver, Name: spec.Name, Type: spec.Type})
		if err != nil {
			return nil, 0, err
		}
		return merge(addresses(ans.Records, spec.Type, uint16(spec.Port), registry.DefaultWeight)), ans.TTL, nil
	case TypeSRV:
		return resolveSRV(ctx, r, spec)
	}
	return nil, 0, fmt.Errorf("unknown record type %q", spec.Type)
}

// resolveSRV resolves an SRV name and then its targets, with the same
// resolver. Only the records of the lowest priority whose targets have
// addresses are used (RFC 2782: higher priorities are fallbacks); each
// address gets its record's port and weight (0 counts as 1). A target that
// cannot be resolved fails the whole lookup, so that its backends are not
// drained for a resolver's hiccup.
func resolveSRV(ctx context.Context, r Resolver, spec registry.Discover) ([]registry.BackendSpec, time.Duration, error) {
	ans, err := ask(ctx, r, Question{Server: spec.Resolver, Name: spec.Name, Type: TypeSRV})
	if err != nil {
		return nil, 0, err
	}
	var recs []Record
	for _, rec := range ans.Records {
		// A target of "." says the service is not offered there.
		if rec.Target != "" && rec.Target != "." && rec.Port != 0 {
			recs = append(recs, rec)
		}
	}
	slices.SortStableFunc(recs, func(a, b Record) int { return cmp.Compare(a.Priority, b.Priority) })
	ttl := ans.TTL
	for len(recs) > 0 {
		group := recs
		if i := slices.IndexFunc(recs, func(rec Record) bool { return rec.Priority != recs[0].Priority }); i > 0 {
			group = recs[:i]
		}
		recs = recs[len(group):]
		var out []registry.BackendSpec
		for _, rec := range group {
			for _, t := range []string{TypeA, TypeAAAA} {
				a, err := ask(ctx, r, Question{Server: spec.Resolver, Name: rec.Target, Type: t})
				if err != nil {
					return nil, 0, fmt.Errorf("target %s: %w", rec.Target, err)
				}
				ttl = lowerTTL(ttl, a.TTL)
				out = append(out, addresses(a.Records, t, rec.Port, int(rec.Weight))...)
			}
		}
		if len(out) > 0 {
			return merge(out), ttl, nil
		}
	}
	return nil, ttl, nil
}

// ask asks one question, bounded by QuestionTimeout.
func ask(ctx context.Context, r Resolver, q Question) (Answer, error) {
	ctx, cancel := context.WithTimeout(ctx, QuestionTimeout)
	defer cancel()
	ans, err := r.Resolve(ctx, q)
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: %w", q.Type, q.Name, err)
	}
	return ans, nil
}

// addresses turns the address records of type t into backends on port.
// Records of another family are ignored.
func addresses(recs []Record, t string, port uint16, weight int) []registry.BackendSpec {
	var out []registry.BackendSpec
	for _, rec := range recs {
		if !rec.Addr.IsValid() || rec.Addr.Is4() != (t == TypeA) {
			continue
		}
		out = append(out, registry.BackendSpec{Address: netip.AddrPortFrom(rec.Addr, port).String(), Weight: weight})
	}
	return out
}

// merge sorts backends by address and keeps one of each, with the highest
// weight any record gave it.
func merge(bs []registry.BackendSpec) []registry.BackendSpec {
	slices.SortFunc(bs, func(a, b registry.BackendSpec) int {
		return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(b.Weight, a.Weight))
	})
	return slices.CompactFunc(bs, func(a, b registry.BackendSpec) bool { return a.Address == b.Address })
}

// lowerTTL returns the lower of two TTLs, 0 meaning unknown.
func lowerTTL(a, b time.Duration) time.Duration {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

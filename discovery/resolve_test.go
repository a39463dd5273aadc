package discovery

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/registry"
)

// zone is an in-memory Resolver: the records of each question, an error
// for some, and a count of the questions asked.
type zone struct {
	mu      sync.Mutex
	answers map[Question]Answer
	errs    map[Question]error
	asked   []Question
}

func newZone() *zone {
	return &zone{answers: make(map[Question]Answer), errs: make(map[Question]error)}
}

func (z *zone) Resolve(_ context.Context, q Question) (Answer, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.asked = append(z.asked, q)
	if err := z.errs[q]; err != nil {
		return Answer{}, err
	}
	return z.answers[q], nil
}

// set answers the question about name of type t with recs and ttl.
func (z *zone) set(name, t string, ttl time.Duration, recs ...Record) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.answers[Question{Name: name, Type: t}] = Answer{Records: recs, TTL: ttl}
	delete(z.errs, Question{Name: name, Type: t})
}

func (z *zone) fail(name, t string, err error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.errs[Question{Name: name, Type: t}] = err
}

func addr(s string) Record { return Record{Addr: netip.MustParseAddr(s)} }

func backends(pairs ...any) []registry.BackendSpec {
	var out []registry.BackendSpec
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, registry.BackendSpec{Address: pairs[i].(string), Weight: pairs[i+1].(int)})
	}
	return out
}

var errTimeout = errors.New("i/o timeout")

func TestResolve(t *testing.T) {
	z := newZone()
	z.set("app.test", TypeA, 30*time.Second, addr("10.0.0.2"), addr("10.0.0.1"), addr("10.0.0.2"), addr("::1"))
	z.set("app.test", TypeAAAA, 0, addr("::1"), addr("fd00::2"))
	// SRV: priority 10 has a target with no address, and one with two;
	// priority 20 is a fallback; "." means no service.
	z.set("_ws._tcp.app.test", TypeSRV, time.Minute,
		Record{Target: "b.app.test.", Port: 9002, Priority: 10, Weight: 0},
		Record{Target: "c.app.test.", Port: 9003, Priority: 20, Weight: 1},
		Record{Target: "a.app.test.", Port: 9001, Priority: 10, Weight: 3},
		Record{Target: "gone.app.test.", Port: 9004, Priority: 10, Weight: 3},
		Record{Target: ".", Port: 9005, Priority: 0})
	z.set("a.app.test.", TypeA, 20*time.Second, addr("10.0.0.1"))
	z.set("a.app.test.", TypeAAAA, 0, addr("fd00::1"))
	z.set("b.app.test.", TypeA, 40*time.Second, addr("10.0.0.2"))
	z.set("c.app.test.", TypeA, 0, addr("10.0.0.3"))
	// Only fallbacks have addresses.
	z.set("_fallback._tcp.app.test", TypeSRV, time.Minute,
		Record{Target: "gone.app.test.", Port: 9001, Priority: 1},
		Record{Target: "c.app.test.", Port: 9003, Priority: 2, Weight: 7})
	// A target that does not resolve.
	z.set("_flaky._tcp.app.test", TypeSRV, time.Minute,
		Record{Target: "a.app.test.", Port: 9001, Priority: 1},
		Record{Target: "flaky.app.test.", Port: 9001, Priority: 1})
	z.fail("flaky.app.test.", TypeAAAA, errTimeout)
	z.set("_none._tcp.app.test", TypeSRV, time.Minute, Record{Target: ".", Priority: 1})

	for _, tc := range []struct {
		name    string
		spec    registry.Discover
		want    []registry.BackendSpec
		ttl     time.Duration
		wantErr error
	}{
		{"A: sorted, once each, IPv4 only", registry.Discover{Name: "app.test", Type: TypeA, Port: 9001},
			backends("10.0.0.1:9001", 1, "10.0.0.2:9001", 1), 30 * time.Second, nil},
		{"AAAA", registry.Discover{Name: "app.test", Type: TypeAAAA, Port: 443},
			backends("[::1]:443", 1, "[fd00::2]:443", 1), 0, nil},
		{"SRV: lowest priority with addresses, ports and weights from the records", registry.Discover{Name: "_ws._tcp.app.test", Type: TypeSRV},
			backends("10.0.0.1:9001", 3, "10.0.0.2:9002", 0, "[fd00::1]:9001", 3), 20 * time.Second, nil},
		{"SRV: a fallback priority when the lowest has no address", registry.Discover{Name: "_fallback._tcp.app.test", Type: TypeSRV},
			backends("10.0.0.3:9003", 7), time.Minute, nil},
		{"SRV: a target that fails fails the lookup", registry.Discover{Name: "_flaky._tcp.app.test", Type: TypeSRV},
			nil, 0, errTimeout},
		{"SRV: no service", registry.Discover{Name: "_none._tcp.app.test", Type: TypeSRV}, nil, time.Minute, nil},
		{"nothing", registry.Discover{Name: "nope.test", Type: TypeA, Port: 1}, nil, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ttl, err := resolve(context.Background(), z, tc.spec)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("resolve() error = %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) || ttl != tc.ttl {
				t.Errorf("resolve() = %v, TTL %v; want %v, TTL %v", got, ttl, tc.want, tc.ttl)
			}
		})
	}
}

// Every question goes to the spec's resolver, with a deadline.
func TestResolveAsksTheSpecsServer(t *testing.T) {
	var servers []string
	r := ResolverFunc(func(ctx context.Context, q Question) (Answer, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Errorf("question %+v asked without a deadline", q)
		}
		servers = append(servers, q.Server)
		if q.Type == TypeSRV {
			return Answer{Records: []Record{{Target: "a.test.", Port: 1}}}, nil
		}
		return Answer{}, nil
	})
	if _, _, err := resolve(context.Background(), r, registry.Discover{Name: "_x._tcp.test", Type: TypeSRV, Resolver: "10.0.0.53:53"}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.53:53", "10.0.0.53:53", "10.0.0.53:53"}; !slices.Equal(servers, want) {
		t.Errorf("servers asked = %v, want %v (the SRV name, then A and AAAA of its target)", servers, want)
	}
}

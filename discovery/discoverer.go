package discovery

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/wsgate/wsgate/registry"
)

// Log attribute keys, as listed under "Every key" in the README.
const (
	keyPool       = "pool"
	keyBackend    = "backend"
	keyErr        = "err"
	keyDNSName    = "dns_name"
	keyRecordType = "record_type"
	keyResolver   = "resolver"
	keyBackends   = "backends"
	keyFailures   = "failures"
	keyDuration   = "duration"
	keyConns      = "connections"
)

// Counter tells how many connections a backend holds now;
// *balancer.Balancer is one.
type Counter interface {
	Counts(id registry.ID) (active, total int64)
}

// Observer learns the outcome of every lookup, for metrics. LookupDone is
// called on the pool's goroutine after each lookup; it must be fast and
// safe for concurrent use, and must not keep the *Lookup.
type Observer interface {
	LookupDone(*Lookup)
}

// Lookup is the outcome of one resolution of a pool's name.
type Lookup struct {
	Pool string
	// Err is why the lookup got no answer (the last answer stays in
	// force); nil when it got one.
	Err error
	// Empty: the answer had no address (NXDOMAIN, or no records); the last
	// answer stays in force.
	Empty bool
	// Duration is how long the lookup took, SRV targets included.
	Duration time.Duration
}

// Options configure a Discoverer.
type Options struct {
	// Resolver answers the questions; nil means DNSClient{}.
	Resolver Resolver
	// Connections tells when a vanished backend's last connection has
	// ended, so that it can be deleted. Nil means every vanished backend
	// is deleted at once (its tunnels still run on: the proxy does not
	// need the registry for them).
	Connections Counter
	// Observer, if not nil, learns of every lookup.
	Observer Observer
	// Logger nil means slog.Default().
	Logger *slog.Logger
}

// Discoverer resolves the names of the pools that discover backends and
// records the answers in the registry. Create it with New and run it with
// Run.
type Discoverer struct {
	store    *registry.Store
	resolver Resolver
	counter  Counter
	obs      Observer
	log      *slog.Logger
}

// New returns a Discoverer over store. It starts no goroutine.
func New(store *registry.Store, opts Options) *Discoverer {
	d := &Discoverer{store: store, resolver: opts.Resolver, counter: opts.Connections, obs: opts.Observer, log: opts.Logger}
	if d.resolver == nil {
		d.resolver = DNSClient{}
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	return d
}

// watcher is the goroutine that resolves one pool's name.
type watcher struct {
	spec   registry.Discover
	cancel context.CancelFunc
	done   chan struct{}
}

// Run keeps one goroutine per discovering pool, started, restarted (when
// the pool's discover changes on reload) and stopped as the registry's
// pools change, until ctx is done; then it stops them all and returns nil.
func (d *Discoverer) Run(ctx context.Context) error {
	watchers := make(map[string]*watcher)
	defer func() {
		for _, w := range watchers {
			w.cancel()
		}
		for _, w := range watchers {
			<-w.done
		}
	}()
	for {
		pools, changed := d.store.Pools()
		d.reconcile(ctx, watchers, pools)
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// reconcile starts, restarts and stops watchers to match pools.
func (d *Discoverer) reconcile(ctx context.Context, watchers map[string]*watcher, pools []registry.Pool) {
	want := make(map[string]bool, len(pools))
	for _, p := range pools {
		if p.Discover == nil {
			continue
		}
		want[p.Name] = true
		if w, ok := watchers[p.Name]; ok {
			if w.spec == *p.Discover {
				continue
			}
			w.cancel()
			<-w.done
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &watcher{spec: *p.Discover, cancel: cancel, done: make(chan struct{})}
		watchers[p.Name] = w
		go func() {
			defer close(w.done)
			d.watch(wctx, p.Name, w.spec)
		}()
	}
	for name, w := range watchers {
		if !want[name] {
			w.cancel()
			<-w.done
			delete(watchers, name)
		}
	}
}

// watch resolves spec's name for pool at once and then every interval (or
// sooner, when the answer's TTL is shorter, but not more often than
// MinRefresh allows) until ctx is done. A lookup that fails, or finds no
// address, leaves the last answer in force; each streak of them is logged
// once when it starts and once when it ends.
func (d *Discoverer) watch(ctx context.Context, pool string, spec registry.Discover) {
	resolver := spec.Resolver
	if resolver == "" {
		resolver = "system"
	}
	log := d.log.With(slog.String(keyPool, pool), slog.String(keyDNSName, spec.Name), slog.String(keyRecordType, spec.Type), slog.String(keyResolver, resolver))
	last := d.inForce(pool)
	var (
		trouble  string // the streak's kind, "" when the last lookup had an answer
		failures int
		since    time.Time
	)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		started := time.Now()
		found, ttl, err := resolve(ctx, d.resolver, spec)
		if ctx.Err() != nil {
			return
		}
		lk := Lookup{Pool: pool, Err: err, Empty: err == nil && len(found) == 0, Duration: time.Since(started)}
		if err != nil || lk.Empty {
			kind := "empty"
			if err != nil {
				kind = "error"
			}
			if trouble == "" {
				since, failures = started, 0
			}
			failures++
			switch {
			case kind == trouble && err != nil:
				log.Debug("dns lookup still failing", slog.Int(keyFailures, failures), slog.Any(keyErr, err))
			case kind == trouble:
				log.Debug("dns answer still empty", slog.Int(keyFailures, failures))
			case err != nil:
				log.Warn("dns lookup failed; keeping the last answer", slog.Any(keyErr, err), slog.Int(keyBackends, len(last)))
			default:
				log.Warn("dns answer empty; keeping the last answer", slog.Int(keyBackends, len(last)))
			}
			trouble = kind
			found = last
		} else {
			if trouble != "" {
				log.Info("dns lookup recovered", slog.Int(keyFailures, failures), slog.Duration(keyDuration, time.Since(since)), slog.Int(keyBackends, len(found)))
				trouble = ""
			}
			last = found
		}
		d.record(log, pool, found)
		if d.obs != nil {
			d.obs.LookupDone(&lk)
		}
		wait := spec.Interval
		if err == nil && ttl > 0 {
			wait = min(wait, max(ttl, MinRefresh))
		}
		timer.Reset(max(0, wait-time.Since(started)))
	}
}

// inForce returns the pool's backends that its discovery found last, as
// the registry holds them: what a watcher restarted by a reload keeps in
// force until it has an answer of its own.
func (d *Discoverer) inForce(pool string) []registry.BackendSpec {
	backends, _ := d.store.PoolBackends(pool)
	var out []registry.BackendSpec
	for _, b := range backends {
		if b.Discovered {
			out = append(out, registry.BackendSpec{Address: b.Address, Weight: b.Weight})
		}
	}
	return out
}

// record writes found to the registry and logs what changed.
func (d *Discoverer) record(log *slog.Logger, pool string, found []registry.BackendSpec) {
	ch, err := d.store.SetDiscovered(pool, found, d.idle)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return // a reload took discovery away; Run stops this watcher
	case err != nil:
		log.Error("record discovered backends", slog.Any(keyErr, err))
		return
	}
	for _, addr := range ch.Added {
		log.Info("backend discovered", slog.String(keyBackend, addr))
	}
	for _, addr := range ch.Returned {
		log.Info("backend discovered again", slog.String(keyBackend, addr))
	}
	for _, addr := range ch.Vanished {
		active, _ := d.counts(registry.ID{Pool: pool, Address: addr})
		log.Info("backend vanished from dns; draining", slog.String(keyBackend, addr), slog.Int64(keyConns, active))
	}
	for _, addr := range ch.Removed {
		log.Info("vanished backend removed", slog.String(keyBackend, addr))
	}
}

// idle reports whether a backend holds no connection.
func (d *Discoverer) idle(id registry.ID) bool {
	active, _ := d.counts(id)
	return active == 0
}

func (d *Discoverer) counts(id registry.ID) (active, total int64) {
	if d.counter == nil {
		return 0, 0
	}
	return d.counter.Counts(id)
}

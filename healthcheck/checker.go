package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/registry"
)

// UserAgent is sent with every probe, so backends can tell probes from
// users in their logs.
const UserAgent = "wsgate-healthcheck"

// ConnectionsHeader is the response header in which a backend may report
// its open WebSocket connections, from every proxy in front of it.
const ConnectionsHeader = "X-Backend-Connections"

// maxBody is how much of a probe's response body is read before it is
// discarded.
const maxBody = 64 << 10

// Log attribute keys, as listed under "Every key" in the README.
const (
	keyPool       = "pool"
	keyBackend    = "backend"
	keyReason     = "reason"
	keySuppressed = "suppressed"
	keyErr        = "err"
)

// reportLifetime is how many probe intervals a backend's load report
// stands without a new one; then it is withdrawn (LoadReporter.ForgetLoad).
const reportLifetime = 3

// badReportLogEvery is how often, at most, a backend's unusable
// X-Backend-Connections is logged.
const badReportLogEvery = time.Minute

// ProbeFunc probes one backend once and returns nil when it passes, and
// what its answer said of its load, passed or not. It must return when
// ctx is done.
type ProbeFunc func(ctx context.Context, address string, check registry.HealthCheck) (Answer, error)

// Answer is what a probe learned of the backend's load.
type Answer struct {
	// Connections is the backend's open WebSocket connections, from every
	// proxy, as the answer's X-Backend-Connections header gave them. It
	// counts only when Reported is true.
	Connections int64
	Reported    bool
	// BadReport says why the header, present, could not be used (not one
	// non-negative decimal integer); Reported is then false.
	BadReport error
}

// LoadReporter takes the load backends report in their probe answers;
// *balancer.Balancer is one.
type LoadReporter interface {
	// ReportLoad records that the backend had n open connections, from
	// every proxy, when it answered a probe.
	ReportLoad(id registry.ID, n int64)
	// ForgetLoad withdraws the backend's last report.
	ForgetLoad(id registry.ID)
}

// Observer learns the result of every active probe, for metrics. ProbeDone
// is called on the backend's prober goroutine after each probe; it must be
// fast and safe for concurrent use, and must not keep the *Probe.
type Observer interface {
	ProbeDone(*Probe)
}

// Probe is one active probe's result.
type Probe struct {
	ID registry.ID
	// Err is nil when the probe passed; Reason is the short reason users
	// see for a failure ("status 503", "timeout", "connection refused").
	Err      error
	Reason   string
	Duration time.Duration
}

// Options configure a Checker.
type Options struct {
	// Probe replaces the HTTP probe; tests use it as a seam. Nil means
	// HTTP GET as described in the package documentation.
	Probe ProbeFunc
	// Observer, if not nil, is told of every active probe's result.
	Observer Observer
	// Load, if not nil, is handed the load backends report: every probe
	// answer with a usable X-Backend-Connections goes to ReportLoad, pass
	// or fail; a report is withdrawn with ForgetLoad once three probe
	// intervals have passed without another one, and when the backend's
	// prober stops (removed, its check removed or changed, Run ending).
	// Nil: reports are ignored.
	Load LoadReporter
	// Logger nil means slog.Default().
	Logger *slog.Logger
}

// Checker runs the health checks of every backend in a registry. Create it
// with New and run it with Run.
type Checker struct {
	store *registry.Store
	probe ProbeFunc
	obs   Observer
	load  LoadReporter
	log   *slog.Logger

	mu      sync.Mutex
	probers map[registry.ID]*prober // guarded by mu; written only by Run
}

// prober is the goroutine that checks one backend.
type prober struct {
	id      registry.ID
	check   registry.HealthCheck
	cancel  context.CancelFunc
	done    chan struct{}
	passive chan error // capacity 1: one pending passive failure is enough
}

// New returns a Checker over store. It starts no goroutine.
func New(store *registry.Store, opts Options) *Checker {
	c := &Checker{store: store, probe: opts.Probe, obs: opts.Observer, load: opts.Load, log: opts.Logger, probers: make(map[registry.ID]*prober)}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.probe == nil {
		c.probe = newHTTPProber().probe
	}
	return c
}

// Run keeps one prober per checked backend until ctx is done, then stops
// them all and returns nil.
func (c *Checker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer func() {
		c.mu.Lock()
		for id, p := range c.probers {
			p.cancel()
			delete(c.probers, id)
		}
		c.mu.Unlock()
		wg.Wait()
	}()
	for {
		pools, poolsChanged := c.store.Pools()
		backends, backendsChanged := c.store.Backends()
		c.reconcile(ctx, &wg, pools, backends)
		select {
		case <-poolsChanged:
		case <-backendsChanged:
		case <-ctx.Done():
			return nil
		}
	}
}

// reconcile starts, restarts and stops probers to match the registry.
func (c *Checker) reconcile(ctx context.Context, wg *sync.WaitGroup, pools []registry.Pool, backends []registry.Backend) {
	checks := make(map[string]*registry.HealthCheck, len(pools))
	for _, p := range pools {
		checks[p.Name] = p.Check
	}
	want := make(map[registry.ID]bool, len(backends))

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range backends {
		if checks[b.Pool] == nil {
			continue
		}
		check := withDefaults(*checks[b.Pool])
		id := b.ID()
		want[id] = true
		if p, ok := c.probers[id]; ok {
			if p.check == check {
				continue
			}
			p.cancel() // the check changed: restart with the new one
			<-p.done
		}
		pctx, cancel := context.WithCancel(ctx)
		p := &prober{id: id, check: check, cancel: cancel, done: make(chan struct{}), passive: make(chan error, 1)}
		c.probers[id] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(p.done)
			c.runProber(pctx, p, b.Health)
		}()
	}
	for id, p := range c.probers {
		if want[id] {
			continue
		}
		p.cancel()
		<-p.done
		delete(c.probers, id)
		// A backend whose pool lost its check (it may also be gone, then
		// this finds nothing) is healthy again as far as checks go.
		c.setHealth(id, registry.HealthUnknown, "health check removed")
	}
}

// ReportFailure takes a backend down at once after a failed connection
// attempt by the proxy, if its pool has a health check. It never blocks.
func (c *Checker) ReportFailure(pool, address string, err error) {
	c.mu.Lock()
	p := c.probers[registry.ID{Pool: pool, Address: address}]
	c.mu.Unlock()
	if p == nil {
		return
	}
	select {
	case p.passive <- err:
	default: // one is already pending
	}
}

// runProber probes one backend until ctx is done. Its pass/fail counters
// are locals: only this goroutine sees them.
func (c *Checker) runProber(ctx context.Context, p *prober, state registry.Health) {
	var passes, fails int
	var load loadState
	defer c.endLoad(p, &load)
	// The first probe goes out at once, give or take a little jitter so that
	// a reload does not fire every probe in the same instant.
	timer := time.NewTimer(jitter(p.check.Interval / 20))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-p.passive:
			passes, fails = 0, 0
			if state != registry.HealthDown {
				state = registry.HealthDown
				c.setHealth(p.id, state, "passive: "+reason(err))
			}
		case <-timer.C:
			started := time.Now()
			pctx, cancel := context.WithTimeout(ctx, p.check.Timeout)
			ans, err := c.probe(pctx, p.id.Address, p.check)
			cancel()
			if ctx.Err() != nil {
				return
			}
			c.takeLoad(p, &load, ans)
			if c.obs != nil {
				pr := Probe{ID: p.id, Err: err, Duration: time.Since(started)}
				if err != nil {
					pr.Reason = reason(err)
				}
				c.obs.ProbeDone(&pr)
			}
			if err == nil {
				passes, fails = passes+1, 0
			} else {
				passes, fails = 0, fails+1
			}
			next := state
			first := state == registry.HealthUnknown || state == registry.HealthPending
			switch {
			case first && err == nil:
				next = registry.HealthUp
			case first:
				next = registry.HealthDown
			case state == registry.HealthDown && passes >= p.check.HealthyThreshold:
				next = registry.HealthUp
			case state == registry.HealthUp && fails >= p.check.UnhealthyThreshold:
				next = registry.HealthDown
			}
			if next != state {
				state = next
				why := "probe passed"
				if err != nil {
					why = reason(err)
				}
				c.setHealth(p.id, state, why)
			}
			// Probes start an interval apart, less up to 10% of jitter, never
			// more: a dead backend is down within interval ×
			// unhealthy_threshold + timeout.
			timer.Reset(max(0, p.check.Interval-jitter(p.check.Interval/10)-time.Since(started)))
		}
	}
}

// loadState is what a prober keeps of its backend's load reports.
type loadState struct {
	reported   time.Time // when the standing report was made; zero: none stands
	badLogged  time.Time // when a bad header was last logged
	badSkipped int       // bad headers not logged since
}

// takeLoad hands a probe's answer to the LoadReporter, withdraws a report
// that has had no successor for reportLifetime intervals, and logs a bad
// header at most every badReportLogEvery.
func (c *Checker) takeLoad(p *prober, st *loadState, ans Answer) {
	if c.load == nil {
		return
	}
	now := time.Now()
	switch {
	case ans.Reported:
		c.load.ReportLoad(p.id, ans.Connections)
		st.reported = now
	case !st.reported.IsZero() && now.Sub(st.reported) >= reportLifetime*p.check.Interval:
		c.load.ForgetLoad(p.id)
		st.reported = time.Time{}
	}
	if ans.BadReport == nil {
		return
	}
	if !st.badLogged.IsZero() && now.Sub(st.badLogged) < badReportLogEvery {
		st.badSkipped++
		return
	}
	c.log.Debug("backend load report ignored", slog.String(keyPool, p.id.Pool), slog.String(keyBackend, p.id.Address),
		slog.Any(keyErr, ans.BadReport), slog.Int(keySuppressed, st.badSkipped))
	st.badLogged, st.badSkipped = now, 0
}

// endLoad withdraws the standing report of a prober that stops: nothing
// would expire it.
func (c *Checker) endLoad(p *prober, st *loadState) {
	if c.load != nil && !st.reported.IsZero() {
		c.load.ForgetLoad(p.id)
	}
}

// setHealth writes a transition to the registry and logs it once.
func (c *Checker) setHealth(id registry.ID, h registry.Health, why string) {
	changed, err := c.store.SetHealth(id, h, why)
	if err != nil {
		if !errors.Is(err, registry.ErrNotFound) {
			c.log.Error("record health", slog.String(keyPool, id.Pool), slog.String(keyBackend, id.Address), slog.Any(keyErr, err))
		}
		return
	}
	if !changed {
		return
	}
	attrs := []any{slog.String(keyPool, id.Pool), slog.String(keyBackend, id.Address), slog.String(keyReason, why)}
	switch h {
	case registry.HealthDown:
		c.log.Warn("backend down", attrs...)
	case registry.HealthUp:
		c.log.Info("backend up", attrs...)
	default:
		c.log.Info("backend health unknown", attrs...)
	}
}

// jitter returns a random duration in [0, d).
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// reason turns a probe error into the short reason users see.
func reason(err error) string {
	var se *statusError
	switch {
	case errors.As(err, &se):
		return se.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return "timeout"
	case errors.Is(err, syscall.ENOENT):
		return "no such socket"
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// statusError is a probe answered with an unexpected status.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("status %d", e.code) }

// httpProber is the default ProbeFunc: one fresh connection per probe, so a
// probe also proves the backend still accepts connections.
type httpProber struct {
	client *http.Client
}

type dialAddrKey struct{}

func newHTTPProber() *httpProber {
	var d net.Dialer
	tr := &http.Transport{
		DisableKeepAlives: true,
		// No connection is reused, so the dial target can travel in the
		// request's context: this is how unix: backends are reached.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if path, ok := ctx.Value(dialAddrKey{}).(string); ok {
				return d.DialContext(ctx, "unix", path)
			}
			return d.DialContext(ctx, network, addr)
		},
		MaxResponseHeaderBytes: 16 << 10,
	}
	return &httpProber{client: &http.Client{
		Transport: tr,
		// A redirect is an answer: judge it, do not follow it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (hp *httpProber) probe(ctx context.Context, address string, check registry.HealthCheck) (Answer, error) {
	host := address
	if path, ok := strings.CutPrefix(address, "unix:"); ok {
		host = "localhost"
		ctx = context.WithValue(ctx, dialAddrKey{}, path)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+check.Path, nil)
	if err != nil {
		return Answer{}, fmt.Errorf("checking HTTP health: %w", err)
	}
	req.Header.Set("User-Agent", UserAgent)
	resp, err := hp.client.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("checking HTTP health: %w", err)
	}
	// Read a bounded amount and discard it, so a backend that streams
	// cannot make the probe buffer; the timeout bounds the time.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	ans := readConnections(resp.Header)
	ok := resp.StatusCode/100 == 2
	if check.ExpectedStatus != 0 {
		ok = resp.StatusCode == check.ExpectedStatus
	}
	if !ok {
		return ans, &statusError{code: resp.StatusCode}
	}
	return ans, nil
}

// readConnections reads the X-Backend-Connections header of an answer: it
// must appear once, as a non-negative decimal integer (no sign, no
// spaces inside, at most 2^63-1). Absent, nothing is reported.
func readConnections(h http.Header) Answer {
	vals := h.Values(ConnectionsHeader)
	switch len(vals) {
	case 0:
		return Answer{}
	case 1:
	default:
		return Answer{BadReport: fmt.Errorf("%s sent %d times", ConnectionsHeader, len(vals))}
	}
	n, err := strconv.ParseUint(vals[0], 10, 63)
	if err != nil {
		return Answer{BadReport: fmt.Errorf("%s %q: not a non-negative integer", ConnectionsHeader, vals[0])}
	}
	return Answer{Connections: int64(n), Reported: true}
}

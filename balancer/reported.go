package balancer

import (
	"sync/atomic"

	"github.com/wsgate/wsgate/registry"
)

// maxLoad bounds the figure load returns: loads are in [0, 2^32), so that
// load*weight fits in an int64 (see compareLoad) whatever a backend
// reports.
const maxLoad = 1<<32 - 1

// reportedLoad is a counter's record of the last load its backend
// reported (see Balancer.ReportLoad). It must not be copied.
//
// Each field is its own atomic, written by the one health-check prober of
// the backend and read by every Acquire: a reader may pair base with the
// set of a report just made or just withdrawn, which is a figure at most
// one probe old either way.
type reportedLoad struct {
	n    atomic.Int64 // the backend's own count, as reported
	base atomic.Int64 // n minus the counter's active at the report
	set  atomic.Bool  // a report stands: n and base count
}

// load is the one figure policies compare (per unit of weight, through
// Candidates.Load), in [0, maxLoad].
//
// Without a report it is active + inherited: the connections this process
// holds to the backend, upgrades being set up included, and those older
// processes of a binary upgrade still hold (SetInherited). With one, it is
// active + base, which is the backend's reported count plus the
// connections this process opened to it since the probe minus those it
// closed: the connections of every proxy in front of the backend, older
// generations included (so inherited is not added again), as far as this
// process can know them between two probes. It reads a few atomics and no
// clock; a report's expiry is its reporter's business (see
// Balancer.ForgetLoad).
func (c *counter) load() int64 {
	active := c.active.Load()
	if !c.report.set.Load() {
		return active + c.inherited.Load()
	}
	return min(max(active+c.report.base.Load(), 0), maxLoad)
}

// ReportLoad records that the backend id had n open connections, from
// every proxy in front of it, when it answered a health check (the
// X-Backend-Connections header). From then on, until the next report or
// ForgetLoad, policies see its load as n plus the connections this process
// opens to it minus those it closes; Counts still returns this process's
// own. n is taken in [0, 2^32).
//
// The figure is right to within the connections opening or closing at the
// moment of the probe: one this process has picked but the backend not yet
// counted is missing from it, one this process has released but the
// backend still counts is there twice, until the next report. (Reading
// active as the probe goes out, rather than now, would only move the
// window.) What other processes open after the probe is missing too: the
// figure is as fresh as the probes are frequent.
//
// A backend the balancer has no counter for (not in the registry, or
// removed) is ignored, so a late report cannot bring back a counter
// rebuild dropped; the next probe reports again. It takes the balancer's
// mutex, never held for long, and is meant to be called once per probe.
func (b *Balancer) ReportLoad(id registry.ID, n int64) {
	c := b.counter(id)
	if c == nil {
		return
	}
	n = min(max(n, 0), maxLoad)
	c.report.n.Store(n)
	c.report.base.Store(n - c.active.Load())
	c.report.set.Store(true)
}

// ForgetLoad withdraws the backend id's report: policies go back to
// counting this process's own connections to it. The health checker calls
// it when a backend's report is too old (no answer carried one for three
// probe intervals) and when it stops probing the backend.
func (b *Balancer) ForgetLoad(id registry.ID) {
	if c := b.counter(id); c != nil {
		c.report.set.Store(false)
	}
}

// Reported returns the connection count backend id reported in the health
// check that last did, and whether that report stands (see ReportLoad and
// ForgetLoad).
func (b *Balancer) Reported(id registry.ID) (n int64, ok bool) {
	c := b.counter(id)
	if c == nil || !c.report.set.Load() {
		return 0, false
	}
	return c.report.n.Load(), true
}

// Package balancer picks a backend for each new connection, by a policy
// chosen per pool.
//
// A Balancer reads the pools and backends from the registry, builds an
// immutable snapshot of the available ones (healthy, not draining) with each
// pool's Policy, and publishes it through an atomic pointer; Run rebuilds it
// whenever the registry changes. Acquire is lock-free and allocates nothing:
// it hands the pool's Candidates (a view of the snapshot, minus the backends
// this connection already tried) to the policy, counts a connection on the
// backend chosen and returns a Lease. The connection counts from the moment
// it is picked, so upgrades still in flight count; Lease.Release uncounts
// it, once.
//
// Policies (config's pools[].policy, registry.Pool.Policy):
//
//   - LeastConnections ("least_connections", the default): the backend with
//     the least load per unit of weight, in one pass; ties broken at random
//     by reservoir sampling.
//   - PowerOfTwo ("power_of_two"): two distinct backends drawn at random, the
//     less loaded per unit of weight wins; two counters read whatever the
//     pool's size.
//
// A Policy is one method, Select(Candidates, Rand) int, after Caddy's
// Selector. Both policies compare one figure per backend, Candidates.Load,
// per unit of weight, as load_a*weight_b against load_b*weight_a (no
// division, no floats); their randomness comes only from the Rand they are
// given, so tests script it.
//
// The load is the connections this process holds to the backend (and
// those older processes of a binary upgrade still hold, SetInherited),
// unless the backend reports its own count (a health-check response's
// X-Backend-Connections: N, its connections from every proxy in front of
// it, older processes included), which the health checker hands over with
// ReportLoad. Then the counter keeps base = N - active, and the load
// becomes active + base: N plus the connections this process opened to the
// backend since the probe minus those it closed. So several wsgate
// processes in front of one pool balance its total, not each their own
// share, while a pick still reads only atomics. A report stands until the
// next one or ForgetLoad, which the checker calls when three probe
// intervals pass without a report, or when it stops probing the backend;
// then the load is this process's count (with the inherited) again. Counts
// always returns this process's own connections; Reported returns the
// standing report.
//
// Slow start (config's pools[].slow_start, registry.Pool.SlowStart): a
// backend that becomes available — added to its pool, healthy again,
// undrained — is balanced for the pool's window with a share of its weight
// that grows linearly from a tenth to all of it, so that least connections
// does not send it every new connection of a reconnect storm because it is
// the emptiest. The ramp lives in the weights of the snapshot, which Run
// rebuilds in steps of a twentieth of the window while a backend ramps;
// policies see only Candidates.Weight, and a pick reads no clock. The
// balancer dates these moments itself, on its own clock (Options.Now), as
// it sees them in the registry; backends available from the first snapshot
// do not ramp. Balancer.SlowStart reports where a backend is in its ramp.
//
// Counters belong to the backend's identity (pool and address), not to a
// snapshot, so they survive rebuilds and config reloads. A removed backend's
// counter is dropped once its last connection has ended, and never while an
// Acquire working from an older snapshot could still count on it.
//
// The package does no I/O: no net/http, no sockets.
package balancer

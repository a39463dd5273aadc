// Package discovery finds a pool's backends in DNS (config's
// pools[].discover) and records them in the registry.
//
// A Discoverer follows the registry's pools: each pool with a Discover
// spec gets one goroutine, started, restarted (when a reload changes the
// spec) and stopped by Run. That goroutine resolves the name at once and
// then every Interval — sooner when the answer's TTL is shorter, but never
// more often than MinRefresh unless the interval itself asks for it — and
// writes each answer with registry.Store.SetDiscovered:
//
//   - A and AAAA: every address of the name, on the spec's port, weight 1.
//   - SRV: the records of the lowest priority whose targets have
//     addresses (higher priorities are fallbacks, RFC 2782); each target
//     is resolved (A and AAAA) with the same resolver, and each of its
//     addresses gets the record's port and weight (0 counts as 1). A target
//     of "." offers no service.
//   - New addresses are added pending: the balancer gives them no
//     connection until their first health probe passes.
//   - Addresses the answer no longer has are drained: no new connections,
//     established tunnels untouched. A drained address is deleted at the
//     first lookup after its last connection ended (Options.Connections),
//     and comes back pending if it is found again after that; found again
//     before, it returns with the health it has.
//
// A lookup that fails (an unreachable server, a timeout, SERVFAIL; for SRV,
// any target that cannot be resolved) or finds no address (NXDOMAIN, or no
// records) changes nothing: the last answer stays in force, so a DNS outage
// or a bad zone push never empties a pool. Each streak of such lookups is
// logged at Warn when it starts and at Info when it ends, and every lookup
// is told to the Observer (for wsgate_discovery_errors_total and
// wsgate_discovery_empty_total).
//
// The Resolver interface is the seam: DNSClient asks the spec's server with
// github.com/miekg/dns (UDP, TCP when the answer is truncated), or the
// system's resolver (net.Resolver) when the spec names none; only the
// former knows TTLs. Tests use a ResolverFunc inside testing/synctest
// bubbles, and a real DNS server on loopback (internal/dnstest).
package discovery

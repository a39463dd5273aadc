// Package balancer picks a backend for each new connection by least
// connections.
//
// A Balancer reads the pools and backends from the registry, builds an
// immutable snapshot of the available ones (healthy, not draining) and
// publishes it through an atomic pointer; Run rebuilds it whenever the
// registry changes. Acquire makes one lock-free pass over a pool's snapshot
// and returns a Lease on the backend with the fewest active connections per
// unit of weight, ties broken at random. The connection is counted from the
// moment it is picked, so upgrades still in flight count; Lease.Release
// uncounts it, once.
//
// Counters belong to the backend's identity (pool and address), not to a
// snapshot, so they survive rebuilds and config reloads.
//
// The package does no I/O: no net/http, no sockets.
package balancer

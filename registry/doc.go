// Package registry is wsgate's in-memory database of pools and backends.
//
// It is the only importer of go-memdb. The schema lives in schema.go, the
// record types (Backend, Pool) are plain values, and Store is the typed
// façade callers use: they never see a memdb transaction. Reads return values
// plus a channel that is closed when the data they were read from changes, so
// consumers (the balancer, the admin API) loop
//
//	read → build → publish → select { case <-changed: case <-ctx.Done(): }
//
// without polling. Records are immutable once stored: every write copies the
// stored record, edits the copy and inserts it.
//
// The registry holds what changes rarely and must be consistent: pools,
// backends, weights, health and draining state, the config generation.
// Per-connection counters live in the balancer as atomics.
//
// The registry knows nothing about HTTP, probing, balancing or YAML.
package registry

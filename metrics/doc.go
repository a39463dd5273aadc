// Package metrics keeps wsgate's Prometheus metrics in a registry of its
// own (never the global default one) and serves them in the text format.
//
// A Metrics learns of events through the observer interfaces of the
// packages that see them — proxy.Observer (upgrades, tunnel ends,
// refusals), healthcheck.Observer (probes) and discovery.Observer (DNS
// lookups) — and of config reloads from its caller. Figures that mirror state are not kept here at all: the
// connection gauges and counters, health and draining are read from the
// registry and the balancer's counters at scrape time, the relayed bytes
// from the proxy's own tally, and the config generation from the registry,
// so they always agree with /api/backends.
//
// The metrics, with their labels:
//
//	wsgate_backend_active_connections{pool,backend}    gauge    = active_connections of /api/backends
//	wsgate_backend_connections_total{pool,backend}     counter  = total_connections of /api/backends
//	wsgate_backend_healthy{pool,backend}               gauge    1 unless health checks (or a refused connection) have it down, or it waits for its first probe (discovered)
//	wsgate_backend_draining{pool,backend}              gauge    1 while drained by an operator, or vanished from DNS
//	wsgate_upgrades_total{pool,result}                 counter  result: see proxy.UpgradeResult
//	wsgate_upgrade_duration_seconds{pool}              histogram request received → 101 relayed (result ok only)
//	wsgate_connection_duration_seconds{pool}           histogram 101 → tunnel closed
//	wsgate_closes_total{pool,initiator,code}           counter  initiator client|backend|proxy; code see below
//	wsgate_relayed_bytes_total{pool,direction}         counter  direction client_to_backend|backend_to_client
//	wsgate_health_checks_total{pool,backend,result}    counter  result pass|fail
//	wsgate_tls_handshake_errors_total{reason}          counter  reasons of proxy.RefusalEvent with TLS set
//	wsgate_limited_total{reason}                       counter  reasons of proxy.RefusalEvent without TLS
//	wsgate_config_reloads_total{result}                counter  result ok|error
//	wsgate_config_generation                           gauge    the registry's config generation
//	wsgate_discovery_backends{pool}                    gauge    addresses of the DNS answer in force (pools with discover)
//	wsgate_discovery_errors_total{pool}                counter  lookups that got no answer; the last one stayed
//	wsgate_discovery_empty_total{pool}                 counter  lookups that found no address; the last answer stayed
//
// plus the Go runtime (go_*, with the scheduler's runtime metrics:
// go_sched_latencies_seconds, go_sched_pauses_*) and process (process_*)
// collectors.
//
// Label values are bounded: pools and backends come from the
// configuration (or a pool's DNS answers, whose vanished addresses leave
// the registry once idle), results and reasons from fixed sets, and a close code is
// its decimal text only for the codes RFC 6455 defines (1000–1015) and the
// registered and private ranges (3000–4999); any other code is "other",
// and a tunnel that ended without a close frame is "none".
//
// Series users alert on exist from the start, at zero, so that the first
// failure shows as an increase: every upgrade result and the close code
// "none" of each initiator for every pool, pass and fail for every checked
// backend, every refusal and TLS handshake reason the proxy defines, both
// reload results, the DNS error and empty counters of every discovering
// pool. The health-check series of a backend are
// deleted when it leaves the registry.
//
// Cost on the data path: the observer methods run once per upgrade, tunnel
// end, refusal or probe, never per message. They find their series in
// maps published through atomic pointers (copy on write, a lock only the
// first time a series is needed), so the common case takes no lock and
// allocates nothing; see BenchmarkObserver.
package metrics

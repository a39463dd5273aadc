// Package healthcheck probes backends over HTTP and records their health in
// the registry.
//
// A Checker follows the registry: every backend of a pool with a health
// check gets one prober goroutine, started, restarted (when the pool's check
// changes on reload) and stopped by Run as the registry changes. A prober
// sends GET <path> with User-Agent wsgate-healthcheck every interval (less
// up to 10% of jitter, so probes do not march in lockstep), each bounded by the
// check's timeout; the body is read up to 64 KiB and discarded.
//
// Semantics:
//
//   - Before its first probe answers, a backend is HealthUnknown, which the
//     balancer treats as healthy — or HealthPending, which it does not,
//     when DNS discovery added it. The first verdict is taken at once: a
//     pass makes it up, a failure makes it down.
//   - After that, healthy_threshold consecutive passes bring a down backend
//     up, and unhealthy_threshold consecutive failures take an up backend
//     down.
//   - A pass is a response with the expected status (any 2xx unless one is
//     configured); anything else — another status, a refused connection, a
//     timeout — is a failure.
//   - Passive failures: ReportFailure (called by the proxy when a backend
//     refuses or times out a real connection) takes the backend down at
//     once, for pools with a health check; the prober then needs
//     healthy_threshold passes to bring it back. Pools without a health
//     check ignore passive failures (nothing would bring the backend back);
//     the proxy's retry covers them.
//   - Reported load: an answer may carry X-Backend-Connections: N, the
//     backend's open WebSocket connections from every proxy in front of
//     it. The header must appear once, as a non-negative decimal integer;
//     otherwise it is ignored (logged at debug, at most once a minute per
//     backend) and the probe still passes or fails by its status. A usable
//     N, from a passing or failing answer, goes to Options.Load
//     (LoadReporter.ReportLoad; the balancer in wsgate). A report stands
//     until the next one; once three probe intervals have passed without
//     one (answers without the header, bad values, probes that got no
//     answer), the next probe withdraws it (ForgetLoad), as does the
//     prober's end.
//
// The checker is the only writer of health state, and writes only on a
// transition, which it logs once with the reason. It knows nothing of the
// balancer or the proxy.
package healthcheck

package registry

import "time"

// Health is what a backend's health checks last concluded.
type Health uint8

const (
	// HealthUnknown: no probe has concluded yet. The backend is treated as
	// healthy (a refused connection is retried elsewhere anyway).
	HealthUnknown Health = iota
	// HealthUp: the last health_threshold probes passed.
	HealthUp
	// HealthDown: the last unhealthy_threshold probes failed, or the proxy
	// saw the backend refuse a connection.
	HealthDown
	// HealthPending: a backend that DNS discovery added at run time, in a
	// pool with a health check, whose first probe has not concluded yet.
	// Unlike HealthUnknown it gets no connections: it has to pass a probe
	// first. The first verdict is taken at once, as for HealthUnknown.
	HealthPending
)

func (h Health) String() string {
	switch h {
	case HealthUp:
		return "up"
	case HealthDown:
		return "down"
	case HealthPending:
		return "pending"
	default:
		return "unknown"
	}
}

// Serves reports whether health lets a backend have new connections: it
// is up, or unknown (no probe yet, in a pool whose backends are trusted
// until probed).
func (h Health) Serves() bool { return h == HealthUp || h == HealthUnknown }

// State is a backend's state as the admin API reports it.
type State string

const (
	StateHealthy   State = "healthy"
	StateUnhealthy State = "unhealthy"
	StateDraining  State = "draining"
)

// ID identifies a backend: its pool and address. Counters and health state
// belong to the ID and survive reloads.
type ID struct {
	Pool    string
	Address string
}

// Pool is a named group of backends.
type Pool struct {
	Name string
	// Check is the pool's active health check; nil when it has none.
	Check *HealthCheck
	// Policy names how the balancer chooses among the pool's backends
	// (config's pools[].policy). The registry stores it without reading
	// it; "" means the balancer's default.
	Policy string
	// SlowStart is how long a backend that becomes available (added,
	// healthy again, undrained) takes to reach its full share of new
	// connections (config's pools[].slow_start); 0 means at once. Like
	// Policy, the registry stores it for the balancer without reading it.
	SlowStart time.Duration
	// Discover is how the pool finds backends in DNS; nil when it does
	// not. Like Policy, the registry stores it for its reader (package
	// discovery) without interpreting it.
	Discover *Discover
}

// Discover is a pool's DNS discovery (config's pools[].discover). Values
// are compared with ==, so it holds no slices or maps.
type Discover struct {
	// Name is the DNS name to resolve; for SRV the full record name, such
	// as _ws._tcp.app.example.
	Name string
	// Type is the record type asked for: "A", "AAAA" or "SRV".
	Type string
	// Port is the backends' port for A and AAAA; 0 for SRV, whose records
	// carry it.
	Port int
	// Interval is how often the name is resolved again.
	Interval time.Duration
	// Resolver is the host:port of the DNS server asked; "" means the
	// system's resolver.
	Resolver string
}

// HealthCheck is how a pool's backends are probed. Values are compared
// with ==, so it holds no slices or maps.
type HealthCheck struct {
	Path               string
	Interval           time.Duration
	Timeout            time.Duration
	HealthyThreshold   int
	UnhealthyThreshold int
	// ExpectedStatus is the status code a passing probe answers with; 0
	// means any 2xx.
	ExpectedStatus int
}

// Backend is one backend server. Values returned by Store are copies; change
// the registry only through Store's methods.
type Backend struct {
	Pool    string
	Address string
	// Weight is at least 1.
	Weight int
	Health Health
	// HealthReason says why Health was last set (e.g. "status 503",
	// "connection refused"); empty while HealthUnknown.
	HealthReason string
	// Draining backends get no new connections; their established ones are
	// left alone. It is the operator's flag (the admin API's drain).
	Draining bool

	// Where the backend comes from: the pool's backends in the config
	// (Configured), its DNS discovery's answer in force (Discovered), or
	// both. Store maintains them.
	Configured bool
	Discovered bool
	// Vanished: discovery found the backend once, its answer no longer
	// has it, and the config does not list it. It drains (no new
	// connections, established ones left alone) until its last connection
	// ends, when discovery deletes it, or until it is found again.
	Vanished bool
}

// ID returns the backend's identity.
func (b Backend) ID() ID { return ID{Pool: b.Pool, Address: b.Address} }

// State folds health and draining into the single state users see.
// Draining (by an operator, or because the backend vanished from DNS) wins
// over health: a decision is shown as made. A backend pending its first
// probe is unhealthy: it gets no connections yet.
func (b Backend) State() State {
	switch {
	case b.Draining || b.Vanished:
		return StateDraining
	case !b.Health.Serves():
		return StateUnhealthy
	default:
		return StateHealthy
	}
}

// Available reports whether the backend may receive new connections.
func (b Backend) Available() bool { return b.State() == StateHealthy }

// PoolSpec is a pool as configuration describes it, input to Store.Apply.
type PoolSpec struct {
	Name     string
	Backends []BackendSpec
	// Check is nil for a pool without active health checks.
	Check *HealthCheck
	// Policy is the pool's balancing policy; see Pool.Policy.
	Policy string
	// SlowStart is the pool's slow-start window; see Pool.SlowStart.
	SlowStart time.Duration
	// Discover is nil for a pool without DNS discovery; see Pool.Discover.
	Discover *Discover
}

// BackendSpec is a backend as configuration describes it.
type BackendSpec struct {
	Address string
	// Weight is the backend's share of connections relative to the others
	// of its pool; below 1 (the zero value) it is DefaultWeight.
	Weight int
}

// DefaultWeight is the weight of a backend that is given none.
const DefaultWeight = 1

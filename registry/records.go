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
)

func (h Health) String() string {
	switch h {
	case HealthUp:
		return "up"
	case HealthDown:
		return "down"
	default:
		return "unknown"
	}
}

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
	// left alone.
	Draining bool
}

// ID returns the backend's identity.
func (b Backend) ID() ID { return ID{Pool: b.Pool, Address: b.Address} }

// State folds health and draining into the single state users see.
// Draining wins over health: an operator's decision is shown as made.
func (b Backend) State() State {
	switch {
	case b.Draining:
		return StateDraining
	case b.Health == HealthDown:
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

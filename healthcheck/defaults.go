package healthcheck

import (
	"cmp"
	"time"

	"github.com/wsgate/wsgate/registry"
)

// Defaults of the fields of a registry.HealthCheck: a Checker probes with
// these in place of zero values (a zero ExpectedStatus means any 2xx), and
// the configuration takes them for keys a health_check block leaves out.
const (
	DefaultPath               = "/healthz"
	DefaultInterval           = 1 * time.Second
	DefaultTimeout            = 500 * time.Millisecond
	DefaultHealthyThreshold   = 2
	DefaultUnhealthyThreshold = 2
)

// DefaultCheck returns the health check whose fields all take their
// defaults.
func DefaultCheck() registry.HealthCheck {
	return withDefaults(registry.HealthCheck{})
}

// withDefaults returns c with each zero field set to its default.
func withDefaults(c registry.HealthCheck) registry.HealthCheck {
	c.Path = cmp.Or(c.Path, DefaultPath)
	c.Interval = cmp.Or(c.Interval, DefaultInterval)
	c.Timeout = cmp.Or(c.Timeout, DefaultTimeout)
	c.HealthyThreshold = cmp.Or(c.HealthyThreshold, DefaultHealthyThreshold)
	c.UnhealthyThreshold = cmp.Or(c.UnhealthyThreshold, DefaultUnhealthyThreshold)
	return c
}

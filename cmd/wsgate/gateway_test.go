package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/registry"
)

func TestPoolSpecs(t *testing.T) {
	cfg := &config.Config{Pools: []config.Pool{
		{
			Name:        "chat",
			Backends:    []config.Backend{{Address: "127.0.0.1:9001", Weight: 3}, {Address: "unix:/run/chat.sock", Weight: 1}},
			HealthCheck: &config.HealthCheck{Path: "/ready", Interval: time.Second, Timeout: time.Second / 2, HealthyThreshold: 1, UnhealthyThreshold: 4, ExpectedStatus: 204},
			Policy:      "power_of_two",
		},
		{Name: "feed", Backends: []config.Backend{{Address: "127.0.0.1:9101", Weight: 1}}},
	}}
	want := []registry.PoolSpec{
		{
			Name:     "chat",
			Backends: []registry.BackendSpec{{Address: "127.0.0.1:9001", Weight: 3}, {Address: "unix:/run/chat.sock", Weight: 1}},
			Check:    &registry.HealthCheck{Path: "/ready", Interval: time.Second, Timeout: time.Second / 2, HealthyThreshold: 1, UnhealthyThreshold: 4, ExpectedStatus: 204},
			Policy:   "power_of_two",
		},
		{Name: "feed", Backends: []registry.BackendSpec{{Address: "127.0.0.1:9101", Weight: 1}}},
	}
	if got := poolSpecs(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("poolSpecs() =\n%+v\nwant\n%+v", got, want)
	}
}

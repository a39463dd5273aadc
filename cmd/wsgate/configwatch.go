package main

import (
	"context"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/internal/filestamp"
)

// configWatch reloads the config file when it changes on disk (wsgate run
// -watch-config): for a file that a tool rewrites, or a Kubernetes
// ConfigMap volume, whose updates arrive as a swapped symlink some time
// after the ConfigMap changes and with no signal to anyone.
type configWatch struct {
	path     string
	interval time.Duration
	log      *slog.Logger
	// loaded is the file's stamp when it was read, taken before reading
	// it, so that a change made while it was read is seen.
	loaded filestamp.Stamp
	// pending is the change seen at the last look, when seen.
	pending filestamp.Stamp
	seen    bool
}

// Run looks at the file every interval until ctx is done, and asks for a
// reload as SIGHUP does, by a value on reload, when changed says so. It
// never blocks on reload: a reload still waiting covers every change
// before it. It returns nil when ctx is done.
func (w *configWatch) Run(ctx context.Context, reload chan<- os.Signal) error {
	filestamp.Poll(ctx, w.interval, w.changed, func() {
		w.log.Info("config file changed; reloading", slog.String(keyFile, w.path))
		select {
		case reload <- syscall.SIGHUP:
		default:
		}
	})
	return nil
}

// changed looks at the file once and reports whether it is time to reload
// it: it differs from what was loaded, and it is what it was at the last
// look, so that a file written in steps is not read half-way. A missing
// file (deleted, or a rename under way) is waited for. A change is
// reported once: a file that the reload rejects is not tried again until
// it changes again.
func (w *configWatch) changed() bool {
	now := filestamp.Of(w.path)
	if now == w.loaded || now.Missing() {
		w.seen = false
		return false
	}
	if !w.seen || now != w.pending {
		w.pending, w.seen = now, true
		return false
	}
	w.loaded, w.seen = now, false
	return true
}

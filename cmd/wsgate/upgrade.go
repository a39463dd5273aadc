package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/wsgate/wsgate/registry"
	"github.com/wsgate/wsgate/upgrade"
)

// Binary upgrade (SIGUSR2): see package upgrade. This process starts the
// binary at its own path with the same arguments and its listening
// sockets; once the new process serves, this one stops accepting, tells the
// new one what it still holds per backend, keeps its tunnels until they end
// or shutdown.upgrade_timeout passes (then closes them as SIGTERM would),
// and exits 0.

const (
	// readyTimeout bounds the wait for a new process to serve.
	readyTimeout = 30 * time.Second
	// reportEvery is how often a draining process tells its successor what
	// it still holds.
	reportEvery = 250 * time.Millisecond
)

// successorStarter returns the control.successor of runCmd: it starts the
// binary at this process's path with args, handing it the listeners.
func successorStarter(args []string, stdout, stderr io.Writer) func(*gateway) (*upgrade.Child, error) {
	return func(g *gateway) (*upgrade.Child, error) {
		path, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find this binary: %w", err)
		}
		files, env, err := g.lns.Handover()
		if err != nil {
			return nil, err
		}
		defer func() {
			for _, f := range files {
				f.Close()
			}
		}()
		g.log.Info("binary upgrade: starting a new process", slog.String(keyFile, path))
		child, err := upgrade.Start(context.Background(), upgrade.Options{
			Path: path, Args: args, Files: files, FilesEnv: env,
			// Files, not pipes: the new process writes where this one
			// does after this one has exited.
			Stdout: fileOf(stdout), Stderr: fileOf(stderr),
			ReadyTimeout: readyTimeout,
		})
		if err != nil {
			return nil, err
		}
		g.log.Info("binary upgrade: the new process serves; this one drains", slog.Int(keyNewPID, child.Pid),
			slog.Int(keyConnections, g.proxy.ActiveTunnels()), slog.Duration(keyUpgradeTimeout, g.cfg.Shutdown.UpgradeTimeout))
		return child, nil
	}
}

// fileOf returns w when it is an *os.File, else nil (the discard device).
func fileOf(w io.Writer) io.Writer {
	if f, ok := w.(*os.File); ok {
		return f
	}
	return nil
}

// handOver is serve's end after a binary upgrade: stop accepting (the new
// process has the listeners), leave the admin listener to it, tell it what
// this process still holds, and wait for the tunnels to end, for
// shutdown.upgrade_timeout, or for SIGTERM (ctx). serve then closes what
// is left as a shutdown does.
func (g *gateway) handOver(ctx context.Context, child *upgrade.Child, servers ...*http.Server) {
	reportCtx, stopReport := context.WithCancel(context.Background())
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		child.Report(reportCtx, reportEvery, func() []upgrade.Count { return heldCounts(g.bal.Held()) })
	}()
	g.stopReport = func() {
		stopReport()
		<-reported
	}

	stopCtx, cancel := context.WithTimeout(context.Background(), g.cfg.Shutdown.DrainTimeout)
	defer cancel()
	// Stop accepting: the new process takes every connection from now on.
	// Those this process accepted finish their handshakes and read their
	// first requests here before the servers shut down (see handover.go).
	g.adminPause.pause()
	if g.httpPause != nil {
		g.httpPause.pause()
	}
	g.accept.Drain(stopCtx)
	g.newConns.wait(stopCtx)
	for _, srv := range servers {
		if srv != nil {
			_ = srv.Shutdown(stopCtx) // stops accepting; plain requests finish
		}
	}
	timer := time.NewTimer(g.cfg.Shutdown.UpgradeTimeout)
	defer timer.Stop()
	select {
	case <-g.proxy.Idle():
		g.log.Info("binary upgrade: every tunnel has ended")
	case <-timer.C:
		g.log.Info("binary upgrade: upgrade_timeout reached; closing the remaining tunnels",
			slog.Int(keyConnections, g.proxy.ActiveTunnels()), slog.Duration(keyUpgradeTimeout, g.cfg.Shutdown.UpgradeTimeout))
	case <-ctx.Done():
		g.log.Info("shutting down", slog.Duration(keyDrainTimeout, g.cfg.Shutdown.DrainTimeout))
	}
}

// afterHandOver is what a process that handed over does once its own
// tunnels are gone: while an older generation still reports to it, it
// stays and passes those counts on (were it to go, its successor would no
// longer see them); then it stops reporting. SIGTERM (ctx), or the older
// generation's own bound passing, ends the wait.
func (g *gateway) afterHandOver(ctx context.Context) {
	if g.stopReport == nil {
		return
	}
	defer g.stopReport()
	if g.predecessor == nil {
		return
	}
	select {
	case <-g.predecessor:
		return
	default:
	}
	g.log.Info("binary upgrade: waiting for the older process to end, whose connections the new one is told of")
	bound := time.NewTimer(g.cfg.Shutdown.UpgradeTimeout + g.cfg.Shutdown.DrainTimeout)
	defer bound.Stop()
	select {
	case <-g.predecessor:
	case <-bound.C:
	case <-ctx.Done():
	}
}

// settleBound bounds how long a new process of a binary upgrade waits for
// its backends before it says it serves.
const settleBound = 5 * time.Second

// settle waits, before a new process of a binary upgrade says it serves,
// until its registry can route as the old one did: DNS discovery has found
// the backends of every pool that discovers, and no backend waits for its
// first probe. (The old process stops accepting once this one serves; a
// pool that only discovery fills would refuse connections meanwhile.) The
// wait ends at settleBound, or at once when the registry changes no more.
func (g *gateway) settle(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, settleBound)
	defer cancel()
	for {
		pools, poolsChanged := g.store.Pools()
		backends, backendsChanged := g.store.Backends()
		if routable(pools, backends) {
			return
		}
		select {
		case <-ctx.Done():
			g.log.Warn("binary upgrade: serving before every pool has its backends", slog.Duration(keyDuration, settleBound))
			return
		case <-poolsChanged:
		case <-backendsChanged:
		}
	}
}

// routable reports whether no backend waits for its first probe and every
// pool that discovers has found backends.
func routable(pools []registry.Pool, backends []registry.Backend) bool {
	found := make(map[string]bool, len(pools))
	for _, b := range backends {
		if b.Health == registry.HealthPending {
			return false
		}
		found[b.Pool] = true
	}
	for _, p := range pools {
		if p.Discover != nil && !found[p.Name] {
			return false
		}
	}
	return true
}

// heldCounts turns the balancer's held counts into upgrade.Counts.
func heldCounts(held map[registry.ID]int64) []upgrade.Count {
	out := make([]upgrade.Count, 0, len(held))
	for id, n := range held {
		out = append(out, upgrade.Count{Pool: id.Pool, Address: id.Address, N: n})
	}
	return out
}

// inheritCounts applies a predecessor's counts to the balancer, until the
// predecessor is gone (then they count no more); g.predecessor closes then.
func (g *gateway) inheritCounts(ctx context.Context, parent *upgrade.Parent) {
	defer close(g.predecessor)
	last := int64(-1)
	parent.Counts(ctx, func(counts []upgrade.Count) {
		m := make(map[registry.ID]int64, len(counts))
		var total int64
		for _, c := range counts {
			m[registry.ID{Pool: c.Pool, Address: c.Address}] = c.N
			total += c.N
		}
		g.bal.SetInherited(m)
		if total != last {
			g.log.Info("binary upgrade: older processes hold connections", slog.Int64(keyConnections, total))
			last = total
		}
	})
}

// writePIDFile writes this process's PID to path, atomically (a new file
// renamed over the old), so that a supervisor following the file (systemd's
// PIDFile=) sees the process that serves.
func writePIDFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(tmp, "%d\n", os.Getpid())
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

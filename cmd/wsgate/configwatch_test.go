package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wsgate/wsgate/internal/filestamp"
)

// changed reports a change once, after the file held still for one look.
func TestConfigWatchChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wsgate.yaml")
	write := func(data string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	w := &configWatch{path: path, log: slog.New(slog.DiscardHandler), loaded: filestamp.Of(path)}
	looks := func(want ...bool) {
		t.Helper()
		for i, wantChanged := range want {
			if got := w.changed(); got != wantChanged {
				t.Fatalf("look %d: changed() = %v, want %v", i+1, got, wantChanged)
			}
		}
	}
	looks(false, false) // unchanged

	write("two")
	looks(false, true, false, false) // seen, held still: reload, once

	// Written again between every look: not read half-way.
	write("three")
	looks(false)
	write("three, longer")
	looks(false)
	write("three, longer still")
	looks(false, true, false)

	// Deleted: nothing to read; back: reloaded.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	looks(false, false)
	write("four")
	looks(false, true, false)

	// Changed and changed back to what was loaded before the look that
	// would have reloaded it: nothing to do.
	loaded := w.loaded
	write("five")
	looks(false)
	w.loaded = filestamp.Of(path)
	looks(false, false)
	if w.loaded == loaded {
		t.Fatal("test setup: the stamps did not change")
	}
}

// wsgate run -watch-config reloads a config file that is rewritten in
// place, and one in a Kubernetes ConfigMap volume, where an update swaps
// the ..data symlink to a new directory; a rejected file is not retried
// until it changes again.
func TestWatchConfigReloads(t *testing.T) {
	_, a := startBackend(t, "a")
	_, b := startBackend(t, "b")
	dir := t.TempDir()
	g := &gate{}
	g.certFile, g.keyFile, g.roots = tlsFiles(t, dir)

	// The kubelet's layout: wsgate.yaml -> ..data/wsgate.yaml,
	// ..data -> ..v1, the real file in ..v1.
	version := func(name string, gc gateConfig) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		g.path = filepath.Join(dir, name, "wsgate.yaml")
		g.writeConfig(t, gc)
	}
	swap := func(name string) {
		t.Helper()
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", gateConfig{backends: []string{a}})
	swap("..v1")
	path := filepath.Join(dir, "wsgate.yaml")
	if err := os.Symlink(filepath.Join("..data", "wsgate.yaml"), path); err != nil {
		t.Fatal(err)
	}
	// 200ms, not less: the in-place rewrite below truncates, then writes,
	// and a loaded machine may stall between the two for more than the
	// two looks a change must hold still for.
	g.serving(start(t, wsgateBin, "run", "-config", path, "-watch-config", "200ms"))
	held, _ := g.dial(t, "/ws")

	// Rewritten in place.
	g.writeConfig(t, gateConfig{backends: []string{a, b}})
	waitFor(t, "b to be added", func() bool { return len(getBackends(t, g.adminURL)) == 2 })

	// A ConfigMap update.
	version("..v2", gateConfig{backends: []string{b}})
	swap("..v2")
	waitFor(t, "a to be removed", func() bool { return len(getBackends(t, g.adminURL)) == 1 })

	// An invalid update is rejected once; the next valid one applies.
	version("..v3", gateConfig{backends: []string{a}, extra: "bogus_key: 1\n"})
	swap("..v3")
	waitFor(t, "the rejection", func() bool { return strings.Contains(g.Stderr.String(), "reload rejected") })
	version("..v4", gateConfig{backends: []string{a, b}})
	swap("..v4")
	waitFor(t, "a to be back", func() bool { return len(getBackends(t, g.adminURL)) == 2 })
	// The API shows a reload a moment before its log line is written.
	waitFor(t, "the last reload's log line", func() bool {
		return strings.Count(g.Stderr.String(), `msg="config reloaded"`) >= 3
	})

	log := g.Stderr.String()
	for msg, want := range map[string]int{
		`msg="config file changed; reloading"`:            4,
		`msg="config reloaded"`:                           3,
		`msg="reload rejected; the running config stays"`: 1,
	} {
		if n := strings.Count(log, msg); n != want {
			t.Errorf("%s logged %d times, want %d", msg, n, want)
		}
	}
	echo(t, held, "untouched by the reloads")
}

package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/wsgate/wsgate/config"
	"github.com/wsgate/wsgate/internal/filestamp"
	"github.com/wsgate/wsgate/upgrade"
)

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wsgate run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (required)")
	var opts config.Options
	fs.StringVar(&opts.AdminListen, "admin", "", "admin listener `address`, in place of the file's admin.listen (so that processes sharing a file and reuse_port have their own)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	format := fs.String("log-format", "", "log format: text or json (default: the file's log.format, else text)")
	pidFile := fs.String("pid-file", "", "write the serving process's PID to this `file` (a binary upgrade's new process writes its own)")
	watch := fs.Duration("watch-config", 0, "reload the config file when it changes, looking every `interval` (0: off; SIGHUP reloads either way)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "wsgate run: -config FILE is required")
		return 2
	}
	// The flags are checked before the file is read, so that a typo in
	// them is a usage error whatever the file holds.
	if _, err := newLogger(io.Discard, *level, cmp.Or(*format, config.DefaultLogFormat)); err != nil {
		fmt.Fprintln(stderr, "wsgate run:", err)
		return 2
	}
	if *watch < 0 {
		fmt.Fprintf(stderr, "wsgate run: bad -watch-config %s: use a positive interval, or 0 for off\n", *watch)
		return 2
	}
	// Stamped before it is read: a change made meanwhile is not missed.
	loaded := filestamp.Of(*path)
	cfg, err := opts.Load(*path)
	if err != nil {
		printErrors(stderr, err)
		return 1
	}
	// The flag wins over the file.
	log, err := newLogger(stderr, *level, cmp.Or(*format, cfg.Log.Format))
	if err != nil {
		fmt.Fprintln(stderr, "wsgate run:", err)
		return 2
	}
	// A process started by a binary upgrade: its parent waits for it to
	// serve, and reports what it still holds. Generations of a binary
	// upgrade write to the same log: each line says which process wrote it.
	parent, err := upgrade.Inherited()
	if err != nil {
		fmt.Fprintln(stderr, "wsgate run:", err)
		return 1
	}
	log = log.With(slog.Int("pid", os.Getpid()))
	g, lns, err := openGateway(ctx, cfg, opts, log)
	if err != nil {
		fmt.Fprintln(stderr, "wsgate run:", err)
		return 1
	}
	defer lns.Close()
	// SIGHUP reloads the config file, and so does a change to it with
	// -watch-config; SIGUSR2 hands over to a new process. Both are caught
	// before the lines below say the process is up, so that a signal sent
	// as soon as they appear is not lost.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	usr2, stopUsr2 := notifyUpgrade()
	defer stopUsr2()
	fmt.Fprintf(stdout, "wsgate: proxy listening on %s\n", g.proxyURL())
	fmt.Fprintf(stdout, "wsgate: admin listening on %s\n", g.adminURL())
	if g.httpLn != nil {
		fmt.Fprintf(stdout, "wsgate: http listening on %s\n", g.httpURL())
	}
	if *watch > 0 {
		cw := &configWatch{path: *path, interval: *watch, log: log, loaded: loaded}
		watchCtx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			_ = cw.Run(watchCtx, hup)
		}()
		defer func() {
			stopWatch()
			<-watched
		}()
	}
	inheritCtx, stopInherit := context.WithCancel(context.Background())
	defer stopInherit()
	ctl := control{
		reload:    hup,
		upgrade:   usr2,
		successor: successorStarter(append([]string{"run"}, args...), stdout, stderr),
		serving: func() {
			if parent != nil {
				g.settle(ctx)
				if err := parent.Ready(); err != nil {
					log.Error("binary upgrade: tell the old process", slog.Any("err", err))
				}
				log.Info("binary upgrade: serving in place of the old process", slog.Int("old_pid", os.Getppid()))
				g.predecessor = make(chan struct{})
				go g.inheritCounts(inheritCtx, parent)
			}
			// After Ready: the PID file names the process that serves.
			if *pidFile != "" {
				if err := writePIDFile(*pidFile); err != nil {
					log.Error("write the PID file", slog.String("file", *pidFile), slog.Any("err", err))
				}
			}
		},
	}
	err = g.serve(ctx, ctl)
	g.afterHandOver(ctx)
	if err != nil {
		log.Error("stopped", slog.Any("err", err))
		return 1
	}
	log.Info("stopped")
	return 0
}

// Package upgrade hands a running wsgate over to a new process of its
// binary without refusing a connection: the old process starts the new one
// with its listening sockets (listener.Set.Handover), waits until the new
// one says it serves, then stops accepting and drains; meanwhile it tells
// the new one, over a pipe, how many connections it still holds to each
// backend, so that the new process's least-connections counts them.
//
// Generations chain: a process that is draining passes on what its own
// predecessor reports, added to its own counts, so the newest process sees
// every older generation's tunnels. Each process starts at most one
// successor; a successor may start its own while older ones still drain
// (tableflip, which this follows in other ways, allows one upgrade until
// the old process has exited — hours, with WebSockets).
//
// The package knows nothing of HTTP, TLS or the proxy: counts are keyed by
// pool and backend address.
package upgrade

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// EnvUpgrade names the descriptors a process started by Start inherits
// besides its listeners: "ready=FD,counts=FD".
const EnvUpgrade = "WSGATE_UPGRADE"

// Count is the number of connections held to one backend.
type Count struct {
	Pool, Address string
	N             int64
}

// Child is a process started by Start.
type Child struct {
	Pid    int
	cmd    *exec.Cmd
	counts *os.File // the write end of the counts pipe
	exited chan struct{}
}

// Options configure Start.
type Options struct {
	// Path is the binary to start; Args its arguments (without the
	// program name).
	Path string
	Args []string
	// Files are the listening sockets to hand over and FilesEnv the
	// environment entry naming them (listener.Set.Handover's).
	Files    []*os.File
	FilesEnv string
	// Stdout and Stderr of the new process; nil means the discard device.
	Stdout, Stderr io.Writer
	// ReadyTimeout bounds the wait for the new process to serve.
	ReadyTimeout time.Duration
}

// ErrUnsupported is Start's error on systems that cannot hand descriptors
// to a new process.
var ErrUnsupported = errors.New("upgrade: not supported on this system")

// Start starts the new process and waits until it says it serves (Ready),
// exits, or ReadyTimeout passes; in the last two cases it returns an
// error, having killed a process that is still running, and the caller
// serves on. The caller closes opts.Files afterwards.
func Start(ctx context.Context, opts Options) (*Child, error) {
	if !supported {
		return nil, ErrUnsupported
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	defer readyR.Close()
	countsR, countsW, err := os.Pipe()
	if err != nil {
		readyW.Close()
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	n := len(opts.Files)
	cmd := exec.Command(opts.Path, opts.Args...)
	cmd.Stdout, cmd.Stderr = opts.Stdout, opts.Stderr
	cmd.ExtraFiles = append(append([]*os.File(nil), opts.Files...), readyW, countsR)
	cmd.Env = append(os.Environ(), opts.FilesEnv,
		fmt.Sprintf("%s=ready=%d,counts=%d", EnvUpgrade, 3+n, 4+n))
	if err := cmd.Start(); err != nil {
		readyW.Close()
		countsR.Close()
		countsW.Close()
		return nil, fmt.Errorf("upgrade: start %s: %w", opts.Path, err)
	}
	readyW.Close()
	countsR.Close()
	c := &Child{Pid: cmd.Process.Pid, cmd: cmd, counts: countsW, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // reaps it; Exited tells
		close(c.exited)
	}()

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(readyR).ReadString('\n')
		line <- s
	}()
	timer := time.NewTimer(opts.ReadyTimeout)
	defer timer.Stop()
	var failure error
	select {
	case s := <-line:
		if want := fmt.Sprintf("ready %d\n", c.Pid); s == want {
			return c, nil
		}
		failure = fmt.Errorf("upgrade: new process %d ended before it served", c.Pid)
		if s != "" {
			failure = fmt.Errorf("upgrade: new process %d said %q, not that it serves", c.Pid, strings.TrimSpace(s))
		}
	case <-timer.C:
		failure = fmt.Errorf("upgrade: new process %d did not serve within %v", c.Pid, opts.ReadyTimeout)
	case <-ctx.Done():
		failure = fmt.Errorf("upgrade: %w", ctx.Err())
	}
	_ = cmd.Process.Kill()
	countsW.Close()
	<-c.exited
	return nil, failure
}

// Exited is closed once the child has exited.
func (c *Child) Exited() <-chan struct{} { return c.exited }

// Report sends the child a snapshot of counts() every period until ctx is
// done or the child goes, then closes the pipe: the child forgets these
// counts then. A snapshot is one line per backend, "pool\taddress\tN", and
// an empty line.
func (c *Child) Report(ctx context.Context, period time.Duration, counts func() []Count) {
	defer c.counts.Close()
	w := bufio.NewWriter(c.counts)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		for _, n := range counts() {
			fmt.Fprintf(w, "%s\t%s\t%d\n", n.Pool, n.Address, n.N)
		}
		w.WriteByte('\n')
		if w.Flush() != nil {
			return // the child is gone
		}
		select {
		case <-ctx.Done():
			return
		case <-c.exited:
			return
		case <-t.C:
		}
	}
}

// Parent is what a process started by Start inherited from its parent.
type Parent struct {
	ready  *os.File
	counts *os.File
}

// Inherited returns the parent of a process started by Start, or nil for
// one that was not. It unsets EnvUpgrade, so that no process started later
// mistakes the descriptors for its own.
func Inherited() (*Parent, error) {
	v, ok := os.LookupEnv(EnvUpgrade)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvUpgrade)
	fds := map[string]int{}
	for _, kv := range strings.Split(v, ",") {
		k, fd, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(fd)
		if !ok || err != nil || n < 3 {
			return nil, fmt.Errorf("upgrade: bad %s=%q", EnvUpgrade, v)
		}
		fds[k] = n
	}
	if _, ok := fds["ready"]; !ok {
		return nil, fmt.Errorf("upgrade: %s=%q has no ready descriptor", EnvUpgrade, v)
	}
	if _, ok := fds["counts"]; !ok {
		return nil, fmt.Errorf("upgrade: %s=%q has no counts descriptor", EnvUpgrade, v)
	}
	return &Parent{
		ready:  os.NewFile(uintptr(fds["ready"]), "wsgate-upgrade-ready"),
		counts: os.NewFile(uintptr(fds["counts"]), "wsgate-upgrade-counts"),
	}, nil
}

// Ready tells the parent that this process serves: the parent then stops
// accepting and drains.
func (p *Parent) Ready() error {
	defer p.ready.Close()
	_, err := fmt.Fprintf(p.ready, "ready %d\n", os.Getpid())
	return err
}

// Counts reads the parent's snapshots and calls apply with each, until
// the parent closes the pipe (it has exited, or ended its report), which
// calls apply with an empty snapshot, or ctx is done.
func (p *Parent) Counts(ctx context.Context, apply func([]Count)) {
	stop := context.AfterFunc(ctx, func() { p.counts.Close() })
	defer stop()
	defer p.counts.Close()
	sc := bufio.NewScanner(p.counts)
	var snap []Count
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			apply(snap)
			snap = nil
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			continue
		}
		n, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || n < 0 {
			continue
		}
		snap = append(snap, Count{Pool: f[0], Address: f[1], N: n})
	}
	if ctx.Err() == nil {
		apply(nil)
	}
}

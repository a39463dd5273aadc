package listener

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Where an inherited socket came from (Listener.From).
const (
	FromSystemd  = "systemd"
	FromHandover = "the parent wsgate process"
)

// Environment variables read by Inherit.
const (
	// EnvHandover names the listening sockets a wsgate process hands to
	// the process it starts: NAME=FD pairs separated by commas, such as
	// "tls=3,admin=4". Set.Handover writes it.
	EnvHandover = "WSGATE_LISTENERS"

	// systemd's socket activation (sd_listen_fds(3)): the sockets are the
	// descriptors from 3 on, LISTEN_FDS of them, named in LISTEN_FDNAMES
	// (colon-separated), for the process LISTEN_PID.
	envListenPID     = "LISTEN_PID"
	envListenFDs     = "LISTEN_FDS"
	envListenFDNames = "LISTEN_FDNAMES"
	listenFDsStart   = 3
)

// Inherited is the listening sockets a process was started with, by name,
// for Open to adopt. A nil *Inherited has none.
type Inherited struct {
	from  string
	files map[string]*os.File
}

// Inherit collects the listening sockets handed to this process, by
// wsgate's hand-over (EnvHandover) or by systemd socket activation, which
// is ignored unless LISTEN_PID is this process. It unsets those variables,
// so that no process started later mistakes the sockets for its own, and
// marks the descriptors close-on-exec. With neither it returns a nil
// *Inherited. Call it once, early: Open takes the sockets over.
func Inherit() (*Inherited, error) {
	fds, from, err := parseEnv(os.Getenv, os.Getpid())
	for _, k := range []string{EnvHandover, envListenPID, envListenFDs, envListenFDNames} {
		os.Unsetenv(k)
	}
	if err != nil || len(fds) == 0 {
		return nil, err
	}
	in := &Inherited{from: from, files: make(map[string]*os.File, len(fds))}
	for name, fd := range fds {
		f, err := inheritFD(fd)
		if err != nil {
			for _, f := range in.files {
				f.Close()
			}
			return nil, fmt.Errorf("listener: socket %q (fd %d) from %s: %w", name, fd, from, err)
		}
		in.files[name] = f
	}
	return in, nil
}

// take hands the files over to the caller, with where they came from; in
// is left empty.
func (in *Inherited) take() (map[string]*os.File, string) {
	if in == nil {
		return nil, ""
	}
	files := in.files
	in.files = nil
	return files, in.from
}

// parseEnv reads the inherited descriptors' names and numbers from the
// environment of process pid: the hand-over's, or systemd's.
func parseEnv(getenv func(string) string, pid int) (map[string]int, string, error) {
	handover := getenv(EnvHandover)
	systemd := getenv(envListenPID) == strconv.Itoa(pid)
	switch {
	case handover != "" && systemd:
		return nil, "", fmt.Errorf("listener: both %s and systemd's %s are set; a process inherits its sockets one way", EnvHandover, envListenFDs)
	case handover != "":
		fds, err := parseHandover(handover)
		return fds, FromHandover, err
	case systemd:
		fds, err := parseSystemd(getenv(envListenFDs), getenv(envListenFDNames))
		return fds, FromSystemd, err
	}
	return nil, "", nil
}

// parseHandover parses EnvHandover's value.
func parseHandover(v string) (map[string]int, error) {
	fds := make(map[string]int)
	seen := make(map[int]bool)
	for pair := range strings.SplitSeq(v, ",") {
		name, num, ok := strings.Cut(pair, "=")
		fd, err := strconv.Atoi(num)
		_, dup := fds[name]
		switch {
		case !ok || name == "" || err != nil || fd < listenFDsStart:
			return nil, fmt.Errorf("listener: %s=%q: %q is not NAME=FD with FD 3 or more", EnvHandover, v, pair)
		case dup:
			return nil, fmt.Errorf("listener: %s=%q names %s twice", EnvHandover, v, name)
		case seen[fd]:
			return nil, fmt.Errorf("listener: %s=%q gives fd %d two names", EnvHandover, v, fd)
		}
		fds[name], seen[fd] = fd, true
	}
	return fds, nil
}

// parseSystemd parses LISTEN_FDS and LISTEN_FDNAMES.
func parseSystemd(count, names string) (map[string]int, error) {
	n, err := strconv.Atoi(count)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("listener: %s=%q is not a number of sockets", envListenFDs, count)
	}
	if n == 0 {
		return nil, nil
	}
	if names == "" {
		return nil, fmt.Errorf("listener: systemd passed %d sockets without names (%s); name each after its listener with FileDescriptorName=%s, %s or %s in the socket unit",
			n, envListenFDNames, TLS, Admin, HTTP)
	}
	list := strings.Split(names, ":")
	if len(list) != n {
		return nil, fmt.Errorf("listener: %s=%d but %s=%q has %d names", envListenFDs, n, envListenFDNames, names, len(list))
	}
	fds := make(map[string]int, n)
	for i, name := range list {
		if _, dup := fds[name]; dup {
			return nil, fmt.Errorf("listener: %s=%q names %s twice; give each listener a socket unit of its own, with its own FileDescriptorName=", envListenFDNames, names, name)
		}
		fds[name] = listenFDsStart + i
	}
	return fds, nil
}

// Handover returns a duplicate of each listener's socket, in the order of
// s, for the first exec.Cmd.ExtraFiles of a process that is to take them
// over, and the environment entry (EnvHandover=…) that names them there:
// ExtraFiles[i] becomes descriptor 3+i. s keeps serving; close the files
// once the process has started.
func (s *Set) Handover() ([]*os.File, string, error) {
	files := make([]*os.File, 0, len(s.lns))
	pairs := make([]string, 0, len(s.lns))
	for i, l := range s.lns {
		fl, ok := l.Listener.(interface{ File() (*os.File, error) })
		if !ok {
			return closeAll(files), "", fmt.Errorf("listener: %s listener (%T) has no file to hand over", l.Name, l.Listener)
		}
		f, err := fl.File()
		if err != nil {
			return closeAll(files), "", fmt.Errorf("listener: hand over %s listener: %w", l.Name, err)
		}
		files = append(files, f)
		pairs = append(pairs, l.Name+"="+strconv.Itoa(listenFDsStart+i))
	}
	return files, EnvHandover + "=" + strings.Join(pairs, ","), nil
}

// closeAll closes files and returns nil.
func closeAll(files []*os.File) []*os.File {
	for _, f := range files {
		f.Close()
	}
	return nil
}

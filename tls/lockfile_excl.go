//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly) || wsgate_portable

package tls

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"
)

// The lock file of systems without flock(2): held while it exists. Its
// holder touches it every lockHeartbeat; one untouched for lockStale
// belongs to an instance that crashed or hangs, and is taken over. Clocks
// of hosts sharing the directory may differ by up to lockStale -
// lockHeartbeat.
const (
	lockStale     = 2 * time.Minute
	lockHeartbeat = 20 * time.Second
)

func tryLock(path string) (unlock func(), ok bool, err error) {
	return tryLockExcl(path, lockStale, lockHeartbeat)
}

// tryLockExcl creates the file at path exclusively (O_EXCL), without
// waiting: ok is false when it exists and is fresher than stale. A stale
// one is removed and the creation tried once more; two processes that
// both find it stale at the same moment may then both believe they hold
// it, a race the flock(2) version does not have. While held, the file's
// time is renewed every beat; unlock stops that and removes it.
func tryLockExcl(path string, stale, beat time.Duration) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		fi, serr := os.Stat(path)
		if serr != nil || time.Since(fi.ModTime()) < stale {
			return nil, false, nil
		}
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, false, rerr
		}
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return nil, false, nil
		}
	}
	if err != nil {
		return nil, false, err
	}
	host, _ := os.Hostname()
	_, werr := fmt.Fprintf(f, "pid %d on %s since %s\n", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return nil, false, werr
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(beat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				_ = os.Chtimes(path, now, now)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-stopped
			os.Remove(path)
		})
	}, true, nil
}

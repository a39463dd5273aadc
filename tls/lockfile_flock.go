//go:build (linux || darwin || freebsd || netbsd || openbsd || dragonfly) && !wsgate_portable

package tls

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// tryLock takes an exclusive flock(2) on the file at path, created if
// needed, without waiting: ok is false when another process (or another
// open of the file) holds it. The kernel lets go of it when the holder
// exits, whatever the way, so a crashed instance blocks nobody. Over NFS
// (v4, or v3 with lockd) Linux maps flock to the server's byte-range locks,
// so instances on several hosts exclude each other too. The file is left
// in place: removing it would race with a process about to lock it.
func tryLock(path string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, &os.PathError{Op: "flock", Path: path, Err: err}
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	}, true, nil
}

// Package filestamp tells whether a file has changed since it was last
// looked at, without reading it: what os.Stat says of it (inode, size and
// modification time), following symbolic links. A Kubernetes ConfigMap or
// Secret update swaps a symlink to a new directory, and certbot and editors
// rename a new file into place: all of them change the inode even when the
// size and the modification time happen to match.
//
// The tls package uses it to watch certificate files, and wsgate run to
// watch its config file.
package filestamp

import (
	"context"
	"os"
	"time"
)

// Stamp identifies one version of a file. Stamps are comparable with ==;
// a file that cannot be stat'ed (missing, unreadable directory) has the
// stamp of an error, which equals any other error's stamp.
type Stamp struct {
	ino     uint64 // 0 where the system does not tell (see fileID)
	size    int64
	modTime time.Time
	err     bool
}

// Of returns the stamp of the file at path.
func Of(path string) Stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return Stamp{err: true}
	}
	return Stamp{ino: fileID(fi), size: fi.Size(), modTime: fi.ModTime()}
}

// Missing reports whether the file could not be stat'ed.
func (s Stamp) Missing() bool { return s.err }

// Poll calls changed every interval until ctx is done, and then act
// whenever changed reported true. changed compares stamps and remembers
// the new ones; act reloads.
func Poll(ctx context.Context, interval time.Duration, changed func() bool, act func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if changed() {
			act()
		}
	}
}

//go:build unix

package filestamp

import (
	"os"
	"syscall"
)

// fileID returns the inode of a file os.Stat described, so that a file
// replaced by another of the same size and modification time still counts
// as changed.
func fileID(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}

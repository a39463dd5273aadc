//go:build unix

package fdlimit

import (
	"fmt"
	"syscall"
)

// raise is Raise on Unix systems. syscall.Rlimit's fields are uint64 on
// Linux and Darwin but int64 on FreeBSD, hence the conversions to uint64.
func raise() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("get open file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return uint64(lim.Cur), fmt.Errorf("raise open file limit to %d: %w", lim.Max, err)
		}
		lim = raised
	}
	return uint64(lim.Cur), nil
}

// Package fdlimit raises the process's limit on open files (RLIMIT_NOFILE)
// as far as it may go and says what it is, for the commands that hold many
// sockets: wsgate derives its connection limit from it, and wsgate-bench
// warns when an idle run will not fit.
//
// The system part is one function per platform family, in
// fdlimit_unix.go (getrlimit and setrlimit) and fdlimit_windows.go.
package fdlimit

// Raise lifts the soft limit on open files to the hard limit and returns
// the soft limit in force afterwards. When raising fails it returns the
// limit still in force along with the error; when the limit cannot be read
// it returns 0 and the error.
//
// An unlimited RLIM_INFINITY comes back as the system defines it, at least
// math.MaxInt64. Windows has no per-process limit of this kind; there Raise
// returns math.MaxUint64.
func Raise() (uint64, error) {
	return raise()
}

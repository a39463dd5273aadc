//go:build linux && !wsgate_portable

package sockio

// fastPath: this build reads and writes with raw system calls (see
// TestWriteTimeoutSparesSlowReaders).
const fastPath = true

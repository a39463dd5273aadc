//go:build !unix

package main

import "os"

// notifyUpgrade: no binary upgrade here (no SIGUSR2, no descriptors handed
// to a new process); the channel never delivers.
func notifyUpgrade() (<-chan os.Signal, func()) { return nil, func() {} }

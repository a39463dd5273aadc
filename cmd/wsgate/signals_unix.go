//go:build unix

package main

import (
	"os"
	"os/signal"
	"syscall"
)

// notifyUpgrade returns a channel of SIGUSR2, the binary upgrade's signal,
// and a function that stops it.
func notifyUpgrade() (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR2)
	return c, func() { signal.Stop(c) }
}

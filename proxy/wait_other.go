//go:build !linux

package proxy

// peekReadable reports done at once where MSG_PEEK waiting is not
// implemented: the copier then blocks in Read, holding its buffer.
func (c *copier) peekReadable(fd uintptr) bool { return true }

//go:build !linux

package proxy

import (
	"errors"
	"syscall"
)

// parker is not implemented here: idle tunnels keep their goroutines.
type parker struct{}

func newParker() (*parker, error) { return nil, errors.ErrUnsupported }

func (p *parker) park(*copier, syscall.RawConn) bool { return false }
func (p *parker) forget(*copier)                     {}
func (p *parker) all() []*copier                     { return nil }
func (p *parker) wait(func(*copier))                 {}
func (p *parker) stop()                              {}
func (p *parker) close()                             {}

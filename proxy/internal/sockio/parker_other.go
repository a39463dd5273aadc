//go:build !linux || wsgate_portable

package sockio

import "errors"

// Parker is not implemented here: idle tunnels keep their goroutines.
type Parker struct{}

// NewParker returns an error here.
func NewParker() (*Parker, error) { return nil, errors.ErrUnsupported }

func (p *Parker) Park(Pollable, Waker) (uint64, bool) { return 0, false }
func (p *Parker) Forget(Pollable, uint64)             {}
func (p *Parker) Parked() []Waker                     { return nil }
func (p *Parker) Wait()                               {}
func (p *Parker) Stop()                               {}
func (p *Parker) Close()                              {}

//go:build !linux || wsgate_portable

package sockio

import "errors"

// Parker is not implemented here: idle tunnels keep their goroutines.
type Parker struct{}

// NewParker returns an error here.
func NewParker() (*Parker, error) { return nil, errors.ErrUnsupported }

func (p *Parker) Park(Pollable, Waker) bool { return false }
func (p *Parker) Forget(Pollable, Waker)    {}
func (p *Parker) Parked() []Waker           { return nil }
func (p *Parker) Wait()                     {}
func (p *Parker) Stop()                     {}
func (p *Parker) Close()                    {}

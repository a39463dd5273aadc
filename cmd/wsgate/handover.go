package main

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// Handing the listeners over without losing a connection.
//
// net/http drops a request it reads once Shutdown has begun: it closes
// the connection without an answer (server.go: "if c.server.shuttingDown()
// { return }" after readRequest). So a process that hands over cannot just
// call Shutdown: a connection it accepted a moment before would read its
// request after Shutdown began, and its client would see EOF. Instead it
// stops accepting (the new process takes every new connection from the
// shared socket), waits until each connection it accepted has read its
// first request (newConns), and only then shuts its servers down.

// pausable is a listener that can stop accepting without the http.Server
// serving it noticing: after pause, Accept waits until Close (which the
// server's Shutdown calls) and then reports the listener closed.
type pausable struct {
	net.Listener
	paused    chan struct{}
	pauseOnce sync.Once
	closed    chan struct{}
	closeOnce sync.Once
}

func newPausable(ln net.Listener) *pausable {
	return &pausable{Listener: ln, paused: make(chan struct{}), closed: make(chan struct{})}
}

func (l *pausable) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		select {
		case <-l.paused:
			<-l.closed
			return nil, net.ErrClosed
		default:
		}
	}
	return c, err
}

// pause closes the socket: no connection comes to this process from now on.
func (l *pausable) pause() {
	l.pauseOnce.Do(func() {
		close(l.paused)
		_ = l.Listener.Close()
	})
}

func (l *pausable) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	l.pause()
	return nil
}

// newConns counts an http.Server's connections that have not yet read a
// request (its ConnState hook).
type newConns struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (n *newConns) hook(c net.Conn, s http.ConnState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s == http.StateNew {
		if n.conns == nil {
			n.conns = make(map[net.Conn]struct{})
		}
		n.conns[c] = struct{}{}
		return
	}
	delete(n.conns, c)
}

// watch makes srv report its connections' states to n, after any hook it
// has already.
func (n *newConns) watch(srv *http.Server) {
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, s http.ConnState) {
		if prev != nil {
			prev(c, s)
		}
		n.hook(c, s)
	}
}

// wait returns once no connection is waiting for its first request, or
// ctx is done.
func (n *newConns) wait(ctx context.Context) {
	for {
		n.mu.Lock()
		left := len(n.conns)
		n.mu.Unlock()
		if left == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

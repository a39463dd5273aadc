package backend

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
)

// Connection timing, as in gorilla/websocket's examples/chat.
const (
	// writeWait is the time allowed to write a message or control frame to
	// the peer.
	writeWait = 10 * time.Second

	// pongWait is the time allowed to read the next pong from the peer.
	pongWait = 60 * time.Second

	// pingPeriod is how often the peer is pinged. It must be less than
	// pongWait so a pong can arrive before the read deadline.
	pingPeriod = (pongWait * 9) / 10

	// closeGracePeriod is how long a peer dropped for being too slow has to
	// answer our close frame before its connection is closed. (Drained peers
	// get Options.DrainTimeout instead.)
	closeGracePeriod = 5 * time.Second

	// lingerTimeout bounds how long the rest of an over-limit message is read
	// and discarded after the 1009 close frame; see lingerClose.
	lingerTimeout = 2 * time.Second

	// sendQueueLen bounds each connection's outbound queue, in messages. An
	// echo client that fills it waits (its own backpressure); a chat member
	// that fills it is dropped.
	sendQueueLen = 64
)

// message is one WebSocket data message.
type message struct {
	typ  int // websocket.TextMessage or websocket.BinaryMessage
	data []byte
}

// client is one WebSocket connection and its two pumps. readPump is the only
// reader of conn and writePump the only writer of data messages and pings;
// close frames go through conn.WriteControl, which gorilla allows from any
// goroutine.
type client struct {
	s          *Server
	conn       *websocket.Conn // set once upgraded, before the pumps start
	remoteAddr string
	path       string
	chat       bool
	room       string
	start      time.Time

	// send is the bounded outbound queue. For echo only readPump sends into
	// it; for chat only the hub does, under hub.mu. It is never closed.
	send chan message
	// dropped is closed by the hub, under hub.mu, when this chat member is
	// dropped for being slow.
	dropped chan struct{}
	// done is closed by readPump when it stops reading.
	done chan struct{}
	// writerDone is closed by writePump when it returns.
	writerDone chan struct{}

	// sentCode is the close code writePump sent, 0 if none. Written by
	// writePump, read by readPump after writerDone is closed.
	sentCode int
}

func newClient(s *Server, r *http.Request, room *string) *client {
	c := &client{
		s:          s,
		remoteAddr: r.RemoteAddr,
		path:       r.URL.Path,
		start:      time.Now(),
		send:       make(chan message, sendQueueLen),
		dropped:    make(chan struct{}),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	if room != nil {
		c.chat = true
		c.room = *room
	}
	return c
}

// readPump reads messages from the peer and hands each to handle.
//
// It runs in its own goroutine and is the only reader of the connection.
// When it stops reading it waits for writePump, closes the connection and
// releases the server's slot: after readPump returns, the connection is gone.
func (c *client) readPump() {
	var err error
	defer func() { c.finish(err) }()

	c.conn.SetReadLimit(c.s.maxMessage)
	c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error {
		return c.conn.SetReadDeadline(time.Now().Add(pongWait))
	})
	for {
		var m message
		m.typ, m.data, err = c.conn.ReadMessage()
		if err != nil {
			// On ErrReadLimit gorilla has already sent close 1009; on a
			// close frame from the peer it has already answered it.
			return
		}
		if !c.handle(m) {
			return
		}
	}
}

// handle is the application: echo the message, or broadcast it to the room.
// It reports false when the connection should stop reading.
func (c *client) handle(m message) bool {
	if c.chat {
		if n := c.s.hub.broadcast(c, m); n > 0 {
			c.s.log.Debug("dropped slow chat members", slog.String(keyRoom, c.room), slog.Int(keyConns, n))
		}
		return true
	}
	select {
	case c.send <- m:
		return true
	case <-c.writerDone:
		return false
	}
}

// finish tears the connection down once readPump has stopped reading.
func (c *client) finish(err error) {
	c.s.hub.leave(c)
	close(c.done)
	<-c.writerDone

	code := c.sentCode
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		if code == 0 {
			code = ce.Code
		}
		err = nil // the peer closed properly
	case errors.Is(err, websocket.ErrReadLimit):
		code = websocket.CloseMessageTooBig
		lingerClose(c.conn.NetConn())
	}
	c.conn.Close()

	attrs := []any{
		slog.String(keyRemoteAddr, c.remoteAddr),
		slog.String(keyPath, c.path),
		slog.Int(keyCloseCode, code),
		slog.Duration(keyDuration, time.Since(c.start)),
	}
	if c.chat {
		attrs = append(attrs, slog.String(keyRoom, c.room))
	}
	if err != nil {
		attrs = append(attrs, slog.Any(keyErr, err))
	}
	c.s.log.Debug("websocket closed", attrs...)
	c.s.conns.release(c)
}

// writePump writes queued messages and pings to the peer, and sends the close
// frame when the server drains or the hub drops this client.
//
// It runs in its own goroutine and is the only writer of data messages and
// pings. A write error closes the connection, which ends readPump.
func (c *client) writePump() {
	defer close(c.writerDone)
	ticker := time.NewTicker(pingPeriod)
	defer ticker.Stop()
	for {
		select {
		case m := <-c.send:
			select {
			case <-c.dropped:
				c.closeAndWait(websocket.ClosePolicyViolation, "too slow", closeGracePeriod)
				return
			default:
			}
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(m.typ, m.data); err != nil {
				c.writeFailed(err)
				return
			}
		case <-ticker.C:
			c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				c.writeFailed(err)
				return
			}
		case <-c.dropped:
			c.closeAndWait(websocket.ClosePolicyViolation, "too slow", closeGracePeriod)
			return
		case <-c.s.drain:
			// Serve enforces the drain deadline for every connection at once.
			c.closeAndWait(websocket.CloseGoingAway, "server shutting down", 0)
			return
		case <-c.done:
			return
		}
	}
}

// writeFailed handles a failed write. ErrCloseSent means gorilla's reader
// already sent a close frame (over-limit message or protocol error) and
// readPump is finishing; anything else means the peer is unreachable, so the
// connection is closed to unblock readPump.
func (c *client) writeFailed(err error) {
	if !errors.Is(err, websocket.ErrCloseSent) {
		c.conn.Close()
	}
}

// closeAndWait sends a close frame and waits for readPump to see the peer's
// answer, discarding anything still queued. With a grace > 0 the connection
// is closed if the peer has not answered by then.
func (c *client) closeAndWait(code int, text string, grace time.Duration) {
	err := c.conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(code, text), time.Now().Add(writeWait))
	if err != nil {
		c.writeFailed(err)
		return
	}
	c.sentCode = code
	var timeout <-chan time.Time
	if grace > 0 {
		t := time.NewTimer(grace)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case <-c.send:
			// Discard: readPump may still be queueing echoes.
		case <-c.done:
			return
		case <-timeout:
			c.conn.Close()
			return
		}
	}
}

// lingerClose reads and discards what the peer still sends, until it closes
// or lingerTimeout passes. After an over-limit message the rest of it is
// still in flight; closing a socket with unread data makes the kernel send a
// RST, which can destroy the 1009 close frame before the peer reads it.
// (net/http does the same in closeWriteAndWait.) It runs on readPump's
// goroutine, after gorilla has stopped reading.
func lingerClose(nc net.Conn) {
	if err := nc.SetReadDeadline(time.Now().Add(lingerTimeout)); err != nil {
		return
	}
	io.Copy(io.Discard, nc) //nolint:errcheck // any error ends the linger, as EOF does
}

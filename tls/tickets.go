package tls

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"time"
)

// Session resumption.
//
// crypto/tls resumes sessions by itself, with session tickets sealed under
// keys it makes at random and rotates (a new one a day, each valid a
// week); but those keys are the process's own, so a client that comes
// back to another process — one sharing the port (reuse_port), another
// host behind the same load balancer, the new generation of a binary
// upgrade — makes a full handshake again. With a shared secret, every
// process derives the same keys from it and the clock: the key of period
// n (TicketOptions.Rotate long, counted from the Unix epoch) is
// HMAC-SHA256(secret, "wsgate session ticket key" || n). New tickets are
// sealed under the current period's key; the keys of the periods of the
// last TicketLifetime still open them. So the keys rotate on their own,
// in step on every process, and a stolen key opens at most a day of
// tickets.

// TicketLifetime is how long a ticket sealed under a shared secret's key
// can be used to resume: keys older than this are dropped.
const TicketLifetime = 24 * time.Hour

// DefaultTicketRotate is TicketOptions.Rotate's default.
const DefaultTicketRotate = time.Hour

// MinTicketSecret is the shortest secret TicketOptions takes, in bytes.
const MinTicketSecret = 32

// TicketOptions control TLS session resumption (TLS 1.3 PSK and TLS 1.2
// session tickets).
type TicketOptions struct {
	// Disabled turns resumption off: every connection makes a full
	// handshake.
	Disabled bool
	// Secret, when set, is what every process's ticket keys are derived
	// from (see above), so that the processes sharing it resume each
	// other's sessions. At least MinTicketSecret bytes. Without it each
	// process uses crypto/tls's own random keys.
	Secret []byte
	// Rotate is how long one derived key seals new tickets; 0 means
	// DefaultTicketRotate. At most TicketLifetime.
	Rotate time.Duration
}

// errShortSecret is TicketOptions' error for a secret too short.
var errShortSecret = errors.New("tls: session ticket secret shorter than 32 bytes")

// ticketKeys returns the keys for the period now falls in, the current
// one first, and the period's number.
func (o *TicketOptions) ticketKeys(now time.Time) ([][32]byte, int64) {
	rotate := o.rotate()
	n := now.Unix() / int64(rotate/time.Second)
	keep := int64(TicketLifetime / rotate)
	keys := make([][32]byte, 0, keep+1)
	for i := int64(0); i <= keep; i++ {
		keys = append(keys, deriveTicketKey(o.Secret, n-i))
	}
	return keys, n
}

func (o *TicketOptions) rotate() time.Duration {
	r := o.Rotate
	if r <= 0 {
		r = DefaultTicketRotate
	}
	return min(max(r, time.Second), TicketLifetime)
}

func deriveTicketKey(secret []byte, period int64) [32]byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("wsgate session ticket key"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(period))
	m.Write(b[:])
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// applyTickets sets cfg's session tickets as o says, for the time now; it
// returns the period it set keys for (-1 when it set none).
func (o *TicketOptions) apply(cfg *tls.Config, now time.Time) int64 {
	cfg.SessionTicketsDisabled = o.Disabled
	if o.Disabled || len(o.Secret) == 0 {
		return -1
	}
	keys, n := o.ticketKeys(now)
	cfg.SetSessionTicketKeys(keys)
	return n
}

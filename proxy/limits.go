package proxy

import (
	"log/slog"
	"math"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limits bound what clients and tunnels may make the proxy do. A Handler
// starts with Options.Limits; SetLimits changes them while it runs (a
// reload). The zero value limits nothing but the write timeout, which
// is DefaultWriteTimeout unless set.
type Limits struct {
	// MaxConnections bounds the WebSocket connections held at once,
	// established or being set up; more get 503 with Retry-After. Zero
	// means no limit. Set it below the file-descriptor limit (each
	// connection holds two) so that the proxy refuses politely instead of
	// failing to accept.
	MaxConnections int
	// MaxConnectionsPerIP bounds the WebSocket connections of one client
	// address (an IPv6 client's /64); more get 429 with Retry-After. Zero
	// means no limit.
	MaxConnectionsPerIP int
	// HandshakeRatePerIP is how many upgrades a second one client address
	// may make on average, HandshakeBurst how many at once (a token
	// bucket); more get 429 with Retry-After. Zero rate means no limit; a
	// zero burst with a rate means a burst of max(1, rate).
	HandshakeRatePerIP float64
	HandshakeBurst     int
	// MaxMessageBytes bounds a client's message to the backend, all its
	// fragments together, judged from frame headers alone: the client gets
	// close 1009, the backend close 1001 at a frame boundary, and nothing
	// of the frame that would have made the message too big reaches the
	// backend. Zero means no limit.
	MaxMessageBytes int64
	// WriteTimeout bounds how long a tunnel's peer may accept no bytes
	// while data waits for it (a client that stopped reading, say): the
	// tunnel is then closed, and the other side gets a close frame with
	// code 1001. Zero means DefaultWriteTimeout; negative means none. A
	// change applies to tunnels opened after it.
	WriteTimeout time.Duration
	// PingInterval: a client that has sent nothing for this long gets a
	// ping (at a frame boundary of the backend's stream). PingTimeout: a
	// client that then sends no byte for this long has its tunnel closed,
	// and the backend gets close 1001; zero means PingInterval. Zero
	// PingInterval means no pings. Clients' pongs pass on to the backend,
	// which RFC 6455 lets take them as unsolicited heartbeats.
	PingInterval, PingTimeout time.Duration
	// IdleTimeout closes a tunnel that has carried no byte either way for
	// this long, with close 1001 to both sides. Zero means never.
	IdleTimeout time.Duration
	// MaxLifetime closes a tunnel that has lived this long, ±10% at random
	// so that the reconnects spread, with close 1001 to both sides at frame
	// boundaries. Zero means never.
	MaxLifetime time.Duration
	// CloseSpread spreads the 1001 closes of Shutdown evenly over this
	// window (each still at a frame boundary), so that the clients do not
	// all reconnect in the same instant. Zero sends them all at once. It
	// must be shorter than the drain deadline to leave the last tunnels
	// time for their close handshakes.
	CloseSpread time.Duration
}

// Defaults of the per-address limits, for a public endpoint (the README
// says why each is what it is). Options.Limits' zero value has none of
// them: they are config's defaults.
const (
	DefaultMaxConnectionsPerIP = 1000
	DefaultHandshakeRatePerIP  = 50
	DefaultHandshakeBurst      = 500
)

// The refusal reasons of the Handler's limits (the `reason` label of
// wsgate_limited_total).
const (
	// RefusedMaxConnectionsPerIP: Limits.MaxConnectionsPerIP (429).
	RefusedMaxConnectionsPerIP RefusalReason = "max_connections_per_ip"
	// RefusedHandshakeRate: Limits.HandshakeRatePerIP (429).
	RefusedHandshakeRate RefusalReason = "handshake_rate"
	// RefusedMaxMessageBytes: a client's message over
	// Limits.MaxMessageBytes (close 1009).
	RefusedMaxMessageBytes RefusalReason = "max_message_bytes"
)

// SetLimits replaces the Handler's limits: new upgrades are judged by them
// at once; established tunnels follow the ones that are checked as they go
// (message size, pings, idle time, lifetime).
func (h *Handler) SetLimits(l Limits) {
	if l.WriteTimeout == 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	l.WriteTimeout = max(0, l.WriteTimeout)
	if l.PingInterval > 0 && l.PingTimeout <= 0 {
		l.PingTimeout = l.PingInterval
	}
	if l.HandshakeRatePerIP > 0 && l.HandshakeBurst <= 0 {
		l.HandshakeBurst = max(1, int(math.Ceil(l.HandshakeRatePerIP)))
	}
	h.limits.Store(&l)
}

// Limits returns the limits in force.
func (h *Handler) Limits() Limits { return *h.limits.Load() }

// perIP keeps, for each client address that has a connection open or has
// made an upgrade lately, its open connections and its handshake token
// bucket. It holds at most maxTrackedIPs addresses: past that, addresses
// with no connection open are forgotten first, so that a scan of many
// addresses cannot grow it without limit (a forgotten address starts
// again with a full bucket).
type perIP struct {
	mu sync.Mutex
	m  map[netip.Prefix]*ipState // guarded by mu
}

// maxTrackedIPs bounds perIP: about 150 bytes each, 15 MB at most.
const maxTrackedIPs = 100_000

type ipState struct {
	conns int           // guarded by perIP.mu, as are the fields below
	lim   *rate.Limiter // nil without a rate limit
	last  time.Time     // when it was last used
}

// clientKey is the key of a client address (host:port): the address
// itself for IPv4, its /64 for IPv6, where one subscriber holds a whole
// /64. ok is false for an address that does not parse (a Unix socket
// client, say), which no per-address limit applies to.
func clientKey(remoteAddr string) (netip.Prefix, bool) {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// admit counts a new upgrade from key under l and returns the state it is
// counted in, for release (nil when no per-address limit is set); or the
// refusal reason and how long to wait before trying again when a limit
// refuses. The state stays in the map while it counts a connection.
func (p *perIP) admit(key netip.Prefix, l *Limits, now time.Time) (*ipState, RefusalReason, time.Duration) {
	if l.MaxConnectionsPerIP <= 0 && l.HandshakeRatePerIP <= 0 {
		return nil, "", 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = make(map[netip.Prefix]*ipState)
	}
	st := p.m[key]
	if st == nil {
		if len(p.m) >= maxTrackedIPs {
			p.forgetIdleLocked(len(p.m) / 4)
		}
		st = &ipState{}
		p.m[key] = st
	}
	st.last = now
	if l.MaxConnectionsPerIP > 0 && st.conns >= l.MaxConnectionsPerIP {
		return nil, RefusedMaxConnectionsPerIP, time.Second
	}
	if l.HandshakeRatePerIP > 0 {
		limit := rate.Limit(l.HandshakeRatePerIP)
		if st.lim == nil {
			st.lim = rate.NewLimiter(limit, l.HandshakeBurst)
		} else if st.lim.Limit() != limit || st.lim.Burst() != l.HandshakeBurst {
			st.lim.SetLimitAt(now, limit)
			st.lim.SetBurstAt(now, l.HandshakeBurst)
		}
		if r := st.lim.ReserveN(now, 1); !r.OK() {
			return nil, RefusedHandshakeRate, time.Second
		} else if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return nil, RefusedHandshakeRate, d
		}
	}
	st.conns++
	return st, "", 0
}

// release uncounts a connection that admit counted in st (nil: none).
func (p *perIP) release(st *ipState, now time.Time) {
	if st == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st.conns > 0 {
		st.conns--
		st.last = now
	}
}

// expire forgets the addresses with no connection that have not been seen
// for idle, whose buckets have long refilled.
func (p *perIP) expire(now time.Time, idle time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, st := range p.m {
		if st.conns == 0 && now.Sub(st.last) >= idle {
			delete(p.m, k)
		}
	}
}

// forgetIdleLocked forgets up to n addresses with no connection open (map
// order is random, so no address is always the one kept).
func (p *perIP) forgetIdleLocked(n int) {
	for k, st := range p.m {
		if n == 0 {
			return
		}
		if st.conns == 0 {
			delete(p.m, k)
			n--
		}
	}
}

// tracked returns how many addresses perIP holds.
func (p *perIP) tracked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.m)
}

// perIPIdle is how long an address with no connection is remembered: long
// enough for any bucket to refill (a burst of up to a minute's worth).
const perIPIdle = time.Minute

// refusalLogs log each kind of refusal at most once a second.
type refusalLogs struct {
	mu   sync.Mutex
	logs map[RefusalReason]*rateLog
}

func (r *refusalLogs) log(l *slog.Logger, reason RefusalReason, attrs ...slog.Attr) {
	r.mu.Lock()
	if r.logs == nil {
		r.logs = make(map[RefusalReason]*rateLog)
	}
	rl := r.logs[reason]
	if rl == nil {
		rl = &rateLog{}
		r.logs[reason] = rl
	}
	r.mu.Unlock()
	rl.log(l, slog.LevelWarn, "limit reached; refused", append(attrs, slog.String(keyReason, string(reason)))...)
}

// refuse counts and logs a refusal by a limit.
func (h *Handler) refuse(reason RefusalReason, remoteAddr string, attrs ...slog.Attr) {
	h.obs.Refused(&RefusalEvent{Reason: reason, RemoteAddr: remoteAddr})
	h.refusals.log(h.log, reason, append(attrs, slog.String(keyRemoteAddr, remoteAddr))...)
}

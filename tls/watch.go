package tls

import (
	"context"
	"crypto/rand"
	"log/slog"
	"slices"
	"time"

	"github.com/wsgate/wsgate/internal/filestamp"
)

// DefaultWatchInterval is how often Watch looks at the certificate files.
const DefaultWatchInterval = 5 * time.Second

// stampFiles returns the stamps of every certificate and key file.
func stampFiles(files []CertFile) []filestamp.Stamp {
	out := make([]filestamp.Stamp, 0, 2*len(files))
	for _, f := range files {
		out = append(out, filestamp.Of(f.CertFile), filestamp.Of(f.KeyFile))
	}
	return out
}

// changed reports whether the files differ from what was last loaded or
// tried, and remembers what they are now.
func (p *Provider) changed() bool {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	now := stampFiles(p.files)
	if slices.Equal(now, p.stamps) {
		return false
	}
	p.stamps = now
	return true
}

// Watch reloads the certificate files when they change on disk (renewed by
// certbot, or a Kubernetes secret update), checking every interval (0 means
// DefaultWatchInterval), until ctx is done. A change that does not load —
// a half-written file, a key that does not match, an expired certificate —
// is logged and the old certificates stay in use; the next change is tried
// again. It returns nil when ctx is done.
func (p *Provider) Watch(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	rotated := make(chan struct{})
	go func() {
		defer close(rotated)
		p.rotateTickets(ctx)
	}()
	filestamp.Poll(ctx, interval, p.changed, func() {
		p.logger.Info("certificate files changed; reloading")
		if err := p.Reload(); err != nil {
			p.logger.Error("certificate reload rejected; the old certificates stay in use", slog.Any(keyErr, err))
		}
	})
	<-rotated
	return nil
}

// rotateTickets moves the session ticket keys derived from a shared secret
// on as their periods pass, until ctx is done.
func (p *Provider) rotateTickets(ctx context.Context) {
	for {
		p.ticketsMu.Lock()
		wait := time.Duration(0)
		if !p.tickets.Disabled && len(p.tickets.Secret) > 0 {
			rotate := p.tickets.rotate()
			wait = rotate - time.Duration(time.Now().UnixNano()%int64(rotate)) + 10*time.Millisecond
		}
		p.ticketsMu.Unlock()
		if wait == 0 {
			wait = time.Minute // no secret now; SetTickets may bring one
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		p.ticketsMu.Lock()
		if n := p.tickets.apply(p.cfg, time.Now()); n != p.period && n >= 0 {
			p.period = n
			p.logger.Debug("session ticket keys rotated", slog.Int64(keyPeriod, n))
		}
		p.ticketsMu.Unlock()
	}
}

// SetTickets replaces the shared secret and rotation of session tickets
// (a reload); Disabled stays as NewProvider set it.
func (p *Provider) SetTickets(t TicketOptions) error {
	if n := len(t.Secret); n > 0 && n < MinTicketSecret {
		return errShortSecret
	}
	p.ticketsMu.Lock()
	defer p.ticketsMu.Unlock()
	disabled := p.tickets.Disabled
	p.tickets = t
	p.tickets.Secret = append([]byte(nil), t.Secret...)
	p.tickets.Disabled = disabled
	if len(t.Secret) == 0 {
		if p.period < 0 {
			return nil // crypto/tls's own keys are in force
		}
		// crypto/tls cannot go back to its own keys once it was given
		// some: rotate keys from a secret of this process's instead, which
		// is what its own keys are.
		p.tickets.Secret = make([]byte, MinTicketSecret)
		_, _ = rand.Read(p.tickets.Secret)
	}
	p.period = p.tickets.apply(p.cfg, time.Now())
	return nil
}

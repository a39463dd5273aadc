package tls

import (
	"context"
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
	filestamp.Poll(ctx, interval, p.changed, func() {
		p.logger.Info("certificate files changed; reloading")
		if err := p.Reload(); err != nil {
			p.logger.Error("certificate reload rejected; the old certificates stay in use", slog.Any("err", err))
		}
	})
	return nil
}

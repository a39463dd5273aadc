package tls

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme/autocert"
)

// legacyAccountKey is where older autocert versions kept the account key;
// autocert reads it after a miss of accountKey, and never writes it.
const legacyAccountKey = "acme_account.key"

// lockPoll is how often a process waiting for another one's certificate
// order tries the lock again.
const lockPoll = 100 * time.Millisecond

// Limits of autocert's renewal schedule (acme/autocert/renewal.go): it
// renews RenewBefore before expiry, or a third of the lifetime when that
// is zero, at most 30 days before.
const maxRenewBefore = 30 * 24 * time.Hour

// sharedCache is autocert's cache made safe for several wsgate processes
// sharing one cache_dir (replicas on one host, or on several hosts that
// mount one volume), so that they ask the CA for one certificate per name
// and not one each: a process about to order holds a lock file in the
// cache directory from its cache miss to the Put of the new certificate,
// and a process that finds the lock taken waits for it, reads the cache
// again and finds the certificate the other one obtained.
//
// autocert reads a key with Get, orders when what it read is a miss (or,
// when renewing, a certificate due for renewal), and Puts what it
// obtained; nothing of ours runs in between. So the lock is taken in Get,
// when what Get is about to return would make the caller order, and is
// released at the earliest of the Put of that key and the end of the
// caller's context: autocert gives every first order (5 minutes) and
// every renewal (10 minutes) a context of its own, cancelled when it
// returns, whether it obtained a certificate or failed.
//
// The account key is locked the same way, so that processes starting
// together register one account. Challenge tokens are not locked: they are
// what lets a CA's validation connection land on any of the processes
// (autocert shares them through the cache).
type sharedCache struct {
	autocert.Cache
	dir         string
	renewBefore time.Duration // ACMEOptions.RenewBefore
	log         *slog.Logger

	mu   sync.Mutex
	held map[string]*heldLock // keys this process holds the lock of, or waits for
}

// heldLock is this process's hold on one key's lock file.
type heldLock struct {
	once   sync.Once
	unlock func() // nil while the lock is waited for
}

func newSharedCache(c autocert.Cache, dir string, renewBefore time.Duration, log *slog.Logger) *sharedCache {
	return &sharedCache{Cache: c, dir: dir, renewBefore: renewBefore, log: log, held: make(map[string]*heldLock)}
}

var _ autocert.Cache = (*sharedCache)(nil)

// Get returns the cache entry for key. When the entry would make autocert
// order a certificate, Get first takes key's lock, waiting while another
// process holds it, and reads the entry again: if the other process stored
// a certificate meanwhile, that is returned and the lock let go; otherwise
// this process keeps the lock for its order. A lock that cannot be used
// (a file system without locks) is logged and the order goes ahead
// without it.
func (c *sharedCache) Get(ctx context.Context, key string) ([]byte, error) {
	data, err := c.Cache.Get(ctx, key)
	if !c.wouldOrder(key, data, err) {
		return data, err
	}
	c.mu.Lock()
	if c.held[key] != nil {
		// This process is on it: autocert lets one goroutine order and
		// the others wait for it.
		c.mu.Unlock()
		return data, err
	}
	h := &heldLock{}
	c.held[key] = h
	c.mu.Unlock()

	unlock, lerr := c.lock(ctx, key)
	if lerr != nil {
		c.forget(key, h)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		c.log.Warn("acme cache lock unavailable; ordering without it, so other instances may order the same certificate",
			slog.String(keyCacheDir, c.dir), slog.String(keyCacheKey, key), slog.Any(keyErr, lerr))
		return data, err
	}
	data, err = c.Cache.Get(ctx, key)
	if !c.wouldOrder(key, data, err) {
		unlock()
		c.forget(key, h)
		return data, err
	}
	c.mu.Lock()
	h.unlock = unlock
	c.mu.Unlock()
	context.AfterFunc(ctx, func() { c.release(key, h) })
	return data, err
}

// Put stores data under key, and lets go of key's lock if this process
// holds it: the certificate it ordered is there for the others.
func (c *sharedCache) Put(ctx context.Context, key string, data []byte) error {
	err := c.Cache.Put(ctx, key, data)
	c.mu.Lock()
	h := c.held[key]
	c.mu.Unlock()
	if h != nil {
		c.release(key, h)
	}
	return err
}

// lock takes key's lock file, waiting until ctx is done, and logs the
// wait and what came of it.
func (c *sharedCache) lock(ctx context.Context, key string) (unlock func(), err error) {
	path := filepath.Join(c.dir, key+"+lock")
	unlock, ok, err := tryLock(path)
	if err != nil || ok {
		return unlock, err
	}
	what := lockSubject(key)
	c.log.Info("acme: another instance is obtaining this; waiting for it", what)
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		if unlock, ok, err = tryLock(path); err != nil || ok {
			if err == nil {
				c.log.Info("acme: the other instance is done; reading the cache again", what)
			}
			return unlock, err
		}
	}
}

// lockSubject is the log attribute naming what key is.
func lockSubject(key string) slog.Attr {
	if key == accountKey {
		return slog.String(keyCacheKey, key)
	}
	return slog.String(keyDomain, strings.TrimSuffix(key, "+rsa"))
}

// release lets go of h, once, and forgets it.
func (c *sharedCache) release(key string, h *heldLock) {
	c.mu.Lock()
	unlock := h.unlock
	if unlock == nil {
		// Still waited for: Get releases it when it gives up.
		c.mu.Unlock()
		return
	}
	if c.held[key] == h {
		delete(c.held, key)
	}
	c.mu.Unlock()
	h.once.Do(unlock)
}

func (c *sharedCache) forget(key string, h *heldLock) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held[key] == h {
		delete(c.held, key)
	}
}

// wouldOrder reports whether autocert, having read data and err for key,
// may go on to ask the CA: for the account key, a miss; for a
// certificate, a miss, an entry it cannot use, or a certificate that its
// renewal would replace.
func (c *sharedCache) wouldOrder(key string, data []byte, err error) bool {
	switch {
	case strings.HasSuffix(key, "+token"), strings.HasSuffix(key, "+http-01"), strings.HasSuffix(key, "+lock"), key == legacyAccountKey:
		return false
	case key == accountKey:
		return errors.Is(err, autocert.ErrCacheMiss)
	case strings.Contains(key, "+") && !strings.HasSuffix(key, "+rsa"):
		return false // not a certificate
	case errors.Is(err, autocert.ErrCacheMiss):
		return true
	case err != nil:
		return false // autocert gives up
	}
	leaf := firstCertificate(data)
	return leaf == nil || !time.Now().Before(leaf.NotAfter.Add(-c.renewThreshold(leaf.NotAfter.Sub(leaf.NotBefore))))
}

// renewThreshold is how long before expiry autocert renews a certificate
// of the given lifetime, jitter left out (it only makes renewals later).
func (c *sharedCache) renewThreshold(lifetime time.Duration) time.Duration {
	if c.renewBefore > 0 {
		return min(c.renewBefore, maxRenewBefore)
	}
	return min(lifetime/3, maxRenewBefore)
}

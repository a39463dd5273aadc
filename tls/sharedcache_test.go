package tls

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/acme/autocert"
)

// instance is one wsgate process's view of a shared cache_dir: caches of
// their own, each with its own lock files opened, as two processes have.
type instance struct {
	*sharedCache
	logs *lockedBuffer
}

func newInstance(dir string) instance {
	logs := &lockedBuffer{}
	return instance{newSharedCache(autocert.DirCache(dir), dir, 0, slog.New(slog.NewTextHandler(logs, nil))), logs}
}

// cacheEntry is a certificate as autocert stores it: key, then chain.
func cacheEntry(p testPair) []byte {
	return append(append([]byte{}, p.keyPEM...), p.certPEM...)
}

type getResult struct {
	data []byte
	err  error
}

// getAsync runs Get in a goroutine.
func getAsync(ctx context.Context, c instance, key string) <-chan getResult {
	ch := make(chan getResult, 1)
	go func() {
		data, err := c.Get(ctx, key)
		ch <- getResult{data, err}
	}()
	return ch
}

// waitLog waits until c has logged msg.
func waitLog(t *testing.T, c instance, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(c.logs.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("%q not logged; log:\n%s", msg, c.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func notYet(t *testing.T, ch <-chan getResult, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned (%d bytes, %v) while the other instance held the lock", what, len(r.data), r.err)
	case <-time.After(3 * lockPoll):
	}
}

func result(t *testing.T, ch <-chan getResult) getResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Get still waiting 5s after the lock was let go")
		return getResult{}
	}
}

const sharedName = "ws.example.com"

// missAndHold has c miss sharedName, as autocert's first Get of an order,
// and returns that order's context: c holds the lock until it ends (or a
// Put). The test's cleanup ends it.
func missAndHold(t *testing.T, c instance) (context.Context, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := c.Get(ctx, sharedName); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Fatalf("Get() error = %v, want a miss", err)
	}
	return ctx, cancel
}

// Two instances miss the same name at once: the first to lock orders; the
// second waits and then reads the certificate the first stored.
func TestSharedCacheOneOrder(t *testing.T) {
	dir := t.TempDir()
	a, b := newInstance(dir), newInstance(dir)
	ctxA, orderDone := missAndHold(t, a)
	ch := getAsync(context.Background(), b, sharedName)
	waitLog(t, b, "another instance is obtaining this; waiting for it")
	notYet(t, ch, "b.Get")

	entry := cacheEntry(validPair(t, sharedName))
	if err := a.Put(ctxA, sharedName, entry); err != nil {
		t.Fatal(err)
	}
	if r := result(t, ch); r.err != nil || !bytes.Equal(r.data, entry) {
		t.Fatalf("b.Get() = %d bytes, %v; want the certificate a stored", len(r.data), r.err)
	}
	waitLog(t, b, "the other instance is done; reading the cache again")
	orderDone() // autocert's context ends after the Put: nothing more to let go
}

// An order that fails (no Put) lets go of the lock when autocert's
// context ends; the waiting instance then orders itself.
func TestSharedCacheFailedOrder(t *testing.T) {
	dir := t.TempDir()
	a, b := newInstance(dir), newInstance(dir)
	_, orderFailed := missAndHold(t, a)
	ctxB, bDone := context.WithCancel(context.Background())
	defer bDone()
	ch := getAsync(ctxB, b, sharedName)
	waitLog(t, b, "waiting for it")
	notYet(t, ch, "b.Get")
	orderFailed()
	if r := result(t, ch); !errors.Is(r.err, autocert.ErrCacheMiss) {
		t.Fatalf("b.Get() error = %v, want a miss (b orders now)", r.err)
	}

	// Now b holds the lock: a third instance waits for b, until its
	// context ends it gives up.
	c := newInstance(dir)
	ctxC, cancelC := context.WithTimeout(context.Background(), 3*lockPoll)
	defer cancelC()
	if _, err := c.Get(ctxC, sharedName); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("c.Get() while b orders = %v, want the context's deadline", err)
	}
	// And the same process asking again does not wait for itself.
	if _, err := b.Get(context.Background(), sharedName); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Fatalf("b.Get() again = %v, want a miss at once", err)
	}
}

// A certificate due for renewal is locked like a miss; a fresh one, the
// account key once stored, and challenge tokens are not locked at all.
func TestSharedCacheRenewal(t *testing.T) {
	dir := t.TempDir()
	a, b := newInstance(dir), newInstance(dir)
	now := time.Now()
	due := makePair(t, []string{sharedName}, now.Add(-80*24*time.Hour), now.Add(10*24*time.Hour), nil) // a third of 90 days left
	fresh := validPair(t, sharedName)
	ctx := context.Background()
	if err := autocert.DirCache(dir).Put(ctx, sharedName, cacheEntry(due)); err != nil {
		t.Fatal(err)
	}

	ctxA, renewed := context.WithCancel(ctx)
	defer renewed()
	if data, err := a.Get(ctxA, sharedName); err != nil || !bytes.Equal(data, cacheEntry(due)) {
		t.Fatalf("a.Get() = %d bytes, %v; want the cached certificate", len(data), err)
	}
	ch := getAsync(ctx, b, sharedName)
	waitLog(t, b, "waiting for it")
	notYet(t, ch, "b.Get of a certificate a is renewing")
	if err := a.Put(ctxA, sharedName, cacheEntry(fresh)); err != nil {
		t.Fatal(err)
	}
	if r := result(t, ch); r.err != nil || !bytes.Equal(r.data, cacheEntry(fresh)) {
		t.Fatalf("b.Get() = %d bytes, %v; want a's renewed certificate", len(r.data), r.err)
	}

	// Fresh: no lock. a reads it and holds nothing, so b does not wait.
	for _, key := range []string{sharedName, accountKey, sharedName + "+token", "abc+http-01"} {
		if err := autocert.DirCache(dir).Put(ctx, key, cacheEntry(fresh)); err != nil {
			t.Fatal(err)
		}
		ctxA, cancel := context.WithCancel(ctx)
		if _, err := a.Get(ctxA, key); err != nil {
			t.Fatal(err)
		}
		ctxB, cancelB := context.WithTimeout(ctx, 5*time.Second)
		if _, err := b.Get(ctxB, key); err != nil {
			t.Errorf("b.Get(%q) while a read it = %v, want it at once", key, err)
		}
		cancelB()
		cancel()
	}
	if strings.Count(b.logs.String(), "waiting for it") != 1 {
		t.Errorf("b waited more than once; log:\n%s", b.logs.String())
	}
}

func TestSharedCacheWouldOrder(t *testing.T) {
	now := time.Now()
	c := newSharedCache(nil, "", 0, discardLogger())
	withRenewBefore := newSharedCache(nil, "", 48*time.Hour, discardLogger())
	shortLived := makePair(t, []string{sharedName}, now.Add(-time.Hour), now.Add(5*24*time.Hour), nil)
	tests := []struct {
		desc string
		c    *sharedCache
		key  string
		data []byte
		err  error
		want bool
	}{
		{"miss", c, sharedName, nil, autocert.ErrCacheMiss, true},
		{"rsa miss", c, sharedName + "+rsa", nil, autocert.ErrCacheMiss, true},
		{"read error", c, sharedName, nil, errors.New("disk on fire"), false},
		{"garbage", c, sharedName, []byte("not PEM"), nil, true},
		{"fresh", c, sharedName, cacheEntry(validPair(t, sharedName)), nil, false},
		{"expired", c, sharedName, cacheEntry(makePair(t, []string{sharedName}, now.Add(-48*time.Hour), now.Add(-time.Hour), nil)), nil, true},
		{"6 days of 6: a third left is 2 days, not due", c, sharedName, cacheEntry(shortLived), nil, false},
		{"renew_before 48h, 5 days left", withRenewBefore, sharedName, cacheEntry(shortLived), nil, false},
		{"renew_before 48h, 1 day left", withRenewBefore, sharedName, cacheEntry(makePair(t, []string{sharedName}, now.Add(-time.Hour), now.Add(24*time.Hour), nil)), nil, true},
		{"account key miss", c, accountKey, nil, autocert.ErrCacheMiss, true},
		{"account key hit", c, accountKey, []byte("key"), nil, false},
		{"legacy account key miss", c, "acme_account.key", nil, autocert.ErrCacheMiss, false},
		{"tls-alpn-01 token miss", c, sharedName + "+token", nil, autocert.ErrCacheMiss, false},
		{"http-01 token miss", c, "tok+http-01", nil, autocert.ErrCacheMiss, false},
	}
	for _, tt := range tests {
		if got := tt.c.wouldOrder(tt.key, tt.data, tt.err); got != tt.want {
			t.Errorf("%s: wouldOrder(%q) = %v, want %v", tt.desc, tt.key, got, tt.want)
		}
	}
}

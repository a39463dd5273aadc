package registry

import (
	"errors"
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// ErrNotFound is returned for a pool or backend the registry does not hold.
var ErrNotFound = errors.New("registry: no such backend")

// Store is the registry. It is safe for concurrent use: one writer at a
// time, readers on immutable snapshots without locking.
type Store struct {
	db *memdb.MemDB
}

// New returns an empty Store.
func New() (*Store, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("registry: build schema: %w", err)
	}
	return &Store{db: db}, nil
}

// Apply replaces the configured pools and backends in one transaction, as a
// reload does. A pool that stays gets its new check, policy, slow start
// and discovery. A backend that stays (same pool and address) keeps its
// health and draining state; its weight is updated. New backends start
// with HealthUnknown. Backends and pools that are gone are deleted, except
// the backends DNS discovery holds (Discovered or Vanished) in a pool that
// still discovers: those are discovery's to keep or drop (SetDiscovered).
// Apply returns the new config generation, which starts at 1.
func (s *Store) Apply(pools []PoolSpec) (uint64, error) {
	txn := s.db.Txn(true)
	defer txn.Abort()

	want := make(map[ID]BackendSpec)
	wantPools := make(map[string]PoolSpec, len(pools))
	for _, p := range pools {
		wantPools[p.Name] = p
		for _, b := range p.Backends {
			want[ID{Pool: p.Name, Address: b.Address}] = b
		}
	}

	// Delete what is gone, and hand over to discovery the configured
	// backends it also holds.
	var gone []any
	var unlisted []*Backend
	it, err := txn.Get(tableBackends, indexID)
	if err != nil {
		return 0, fmt.Errorf("registry: list backends: %w", err)
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		b := obj.(*Backend)
		if _, ok := want[b.ID()]; ok {
			continue
		}
		p, ok := wantPools[b.Pool]
		switch {
		case ok && p.Discover != nil && (b.Discovered || b.Vanished):
			if b.Configured {
				unlisted = append(unlisted, b)
			}
		default:
			gone = append(gone, obj)
		}
	}
	it, err = txn.Get(tablePools, indexID)
	if err != nil {
		return 0, fmt.Errorf("registry: list pools: %w", err)
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if _, ok := wantPools[obj.(*Pool).Name]; !ok {
			gone = append(gone, obj)
		}
	}
	for _, obj := range gone {
		table := tableBackends
		if _, ok := obj.(*Pool); ok {
			table = tablePools
		}
		if err := txn.Delete(table, obj); err != nil {
			return 0, fmt.Errorf("registry: delete: %w", err)
		}
	}
	for _, b := range unlisted {
		c := *b
		c.Configured = false
		if err := txn.Insert(tableBackends, &c); err != nil {
			return 0, fmt.Errorf("registry: update backend %s: %w", b.Address, err)
		}
	}

	// Upsert what is wanted.
	for _, p := range pools {
		existing, err := txn.First(tablePools, indexID, p.Name)
		if err != nil {
			return 0, fmt.Errorf("registry: look up pool %s: %w", p.Name, err)
		}
		if existing == nil || !samePool(existing.(*Pool), p) {
			rec := &Pool{Name: p.Name, Policy: p.Policy, SlowStart: p.SlowStart}
			if p.Check != nil {
				c := *p.Check
				rec.Check = &c
			}
			if p.Discover != nil {
				d := *p.Discover
				rec.Discover = &d
			}
			if err := txn.Insert(tablePools, rec); err != nil {
				return 0, fmt.Errorf("registry: insert pool %s: %w", p.Name, err)
			}
		}
		for _, bs := range p.Backends {
			weight := max(bs.Weight, DefaultWeight)
			obj, err := txn.First(tableBackends, indexID, p.Name, bs.Address)
			if err != nil {
				return 0, fmt.Errorf("registry: look up backend %s: %w", bs.Address, err)
			}
			var rec *Backend
			if obj == nil {
				rec = &Backend{Pool: p.Name, Address: bs.Address, Weight: weight, Configured: true}
			} else {
				old := obj.(*Backend)
				if old.Weight == weight && old.Configured && !old.Vanished {
					continue
				}
				c := *old
				c.Weight = weight
				c.Configured = true
				c.Vanished = false // listed again: no longer draining
				rec = &c
			}
			if err := txn.Insert(tableBackends, rec); err != nil {
				return 0, fmt.Errorf("registry: insert backend %s: %w", bs.Address, err)
			}
		}
	}

	gen, err := nextGeneration(txn)
	if err != nil {
		return 0, err
	}
	txn.Commit()
	return gen, nil
}

// samePool reports whether the stored pool already says what spec does, so
// that an unchanged pool is not written (and its watchers not woken).
func samePool(stored *Pool, spec PoolSpec) bool {
	return stored.Policy == spec.Policy && stored.SlowStart == spec.SlowStart &&
		equalPtr(stored.Check, spec.Check) && equalPtr(stored.Discover, spec.Discover)
}

// equalPtr reports whether a and b are both nil or point to equal values.
func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func nextGeneration(txn *memdb.Txn) (uint64, error) {
	obj, err := txn.First(tableMeta, indexID, metaGeneration)
	if err != nil {
		return 0, fmt.Errorf("registry: read generation: %w", err)
	}
	var gen uint64 = 1
	if obj != nil {
		gen = obj.(*metaRecord).Value + 1
	}
	if err := txn.Insert(tableMeta, &metaRecord{Key: metaGeneration, Value: gen}); err != nil {
		return 0, fmt.Errorf("registry: write generation: %w", err)
	}
	return gen, nil
}

// Generation returns the config generation last applied (0 before the first
// Apply).
func (s *Store) Generation() uint64 {
	obj, err := s.db.Txn(false).First(tableMeta, indexID, metaGeneration)
	if err != nil || obj == nil {
		return 0
	}
	return obj.(*metaRecord).Value
}

// Backends returns every backend, ordered by pool then address, and a
// channel that is closed at the next change to any backend.
func (s *Store) Backends() ([]Backend, <-chan struct{}) {
	return s.backends(indexID)
}

// PoolBackends returns the backends of one pool, ordered by address, and a
// channel that is closed at the next change to that pool's backends.
func (s *Store) PoolBackends(pool string) ([]Backend, <-chan struct{}) {
	return s.backends(indexPool, pool)
}

func (s *Store) backends(index string, args ...any) ([]Backend, <-chan struct{}) {
	it, err := s.db.Txn(false).Get(tableBackends, index, args...)
	if err != nil {
		// Only a schema mistake gets here; TestSchema guards against it.
		panic(fmt.Sprintf("registry: %v", err))
	}
	var out []Backend
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, *obj.(*Backend))
	}
	return out, it.WatchCh()
}

// Pools returns all pools in name order, and a channel that is closed at
// the next change to any pool. The returned values share no memory with
// the registry.
func (s *Store) Pools() ([]Pool, <-chan struct{}) {
	it, err := s.db.Txn(false).Get(tablePools, indexID)
	if err != nil {
		panic(fmt.Sprintf("registry: %v", err))
	}
	var out []Pool
	for obj := it.Next(); obj != nil; obj = it.Next() {
		p := *obj.(*Pool)
		if p.Check != nil {
			c := *p.Check
			p.Check = &c
		}
		if p.Discover != nil {
			d := *p.Discover
			p.Discover = &d
		}
		out = append(out, p)
	}
	return out, it.WatchCh()
}

// Backend returns one backend.
func (s *Store) Backend(id ID) (Backend, error) {
	obj, err := s.db.Txn(false).First(tableBackends, indexID, id.Pool, id.Address)
	if err != nil {
		return Backend{}, fmt.Errorf("registry: look up %s/%s: %w", id.Pool, id.Address, err)
	}
	if obj == nil {
		return Backend{}, fmt.Errorf("%w: pool %q address %q", ErrNotFound, id.Pool, id.Address)
	}
	return *obj.(*Backend), nil
}

// SetHealth records a health verdict. It writes only when Health changes
// and reports whether it did, so each transition is logged once by the
// caller.
func (s *Store) SetHealth(id ID, h Health, reason string) (changed bool, err error) {
	return s.update(id, func(b *Backend) bool {
		if b.Health == h {
			return false
		}
		b.Health = h
		b.HealthReason = reason
		return true
	})
}

// SetDraining marks a backend draining or not. It reports whether the state
// changed.
func (s *Store) SetDraining(id ID, draining bool) (changed bool, err error) {
	return s.update(id, func(b *Backend) bool {
		if b.Draining == draining {
			return false
		}
		b.Draining = draining
		return true
	})
}

// update copies the stored backend, lets edit change the copy, and inserts
// it if edit reports a change.
func (s *Store) update(id ID, edit func(*Backend) bool) (bool, error) {
	txn := s.db.Txn(true)
	defer txn.Abort()
	obj, err := txn.First(tableBackends, indexID, id.Pool, id.Address)
	if err != nil {
		return false, fmt.Errorf("registry: look up %s/%s: %w", id.Pool, id.Address, err)
	}
	if obj == nil {
		return false, fmt.Errorf("%w: pool %q address %q", ErrNotFound, id.Pool, id.Address)
	}
	c := *obj.(*Backend)
	if !edit(&c) {
		return false, nil
	}
	if err := txn.Insert(tableBackends, &c); err != nil {
		return false, fmt.Errorf("registry: update %s/%s: %w", id.Pool, id.Address, err)
	}
	txn.Commit()
	return true, nil
}

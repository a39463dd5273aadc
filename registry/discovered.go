package registry

import "fmt"

// PendingReason is the HealthReason of a discovered backend that waits for
// its first probe.
const PendingReason = "discovered; waiting for the first probe"

// DiscoveryChange is what SetDiscovered changed, by address, for its caller
// to log.
type DiscoveryChange struct {
	// Added are new backends. In a pool with a health check they are
	// HealthPending: they get connections once a probe passes.
	Added []string
	// Returned are vanished backends found again; they keep their health.
	Returned []string
	// Vanished are backends the answer no longer has; they drain.
	Vanished []string
	// Removed are vanished backends deleted because idle said their last
	// connection had ended.
	Removed []string
}

// Empty reports whether nothing changed.
func (c DiscoveryChange) Empty() bool {
	return len(c.Added)+len(c.Returned)+len(c.Vanished)+len(c.Removed) == 0
}

// SetDiscovered records found, the backends a pool's DNS discovery resolves
// to now, in one transaction:
//
//   - an address not in the registry is added, HealthPending with
//     PendingReason in a pool with a health check (HealthUnknown in one
//     without), so that it gets no connection before a probe passes;
//   - an address already there is marked Discovered, and a Vanished one
//     returns with the health state it has;
//   - a Discovered backend that found lacks is Vanished (draining) unless
//     the config lists it too, in which case it simply stays;
//   - a Vanished backend for which idle reports true (no connection left)
//     is deleted. A nil idle deletes none.
//
// Weights of found are applied to backends the config does not list; a
// configured backend keeps its configured weight. idle is called inside
// the write transaction: it must be quick and must not call the Store.
// SetDiscovered writes nothing when nothing changes. It returns ErrNotFound
// for a pool that is not in the registry or does not discover.
func (s *Store) SetDiscovered(pool string, found []BackendSpec, idle func(ID) bool) (DiscoveryChange, error) {
	var ch DiscoveryChange
	txn := s.db.Txn(true)
	defer txn.Abort()
	obj, err := txn.First(tablePools, indexID, pool)
	if err != nil {
		return ch, fmt.Errorf("registry: look up pool %s: %w", pool, err)
	}
	if obj == nil || obj.(*Pool).Discover == nil {
		return ch, fmt.Errorf("%w: pool %q does not discover backends", ErrNotFound, pool)
	}
	health, reason := HealthPending, PendingReason
	if obj.(*Pool).Check == nil {
		health, reason = HealthUnknown, ""
	}

	in := make(map[string]bool, len(found))
	var writes []*Backend
	for _, f := range found {
		if in[f.Address] {
			continue
		}
		in[f.Address] = true
		weight := max(f.Weight, DefaultWeight)
		obj, err := txn.First(tableBackends, indexID, pool, f.Address)
		if err != nil {
			return ch, fmt.Errorf("registry: look up backend %s: %w", f.Address, err)
		}
		if obj == nil {
			writes = append(writes, &Backend{Pool: pool, Address: f.Address, Weight: weight, Health: health, HealthReason: reason, Discovered: true})
			ch.Added = append(ch.Added, f.Address)
			continue
		}
		old := obj.(*Backend)
		c := *old
		c.Discovered = true
		if c.Vanished {
			c.Vanished = false
			ch.Returned = append(ch.Returned, f.Address)
		}
		if !c.Configured {
			c.Weight = weight
		}
		if c != *old {
			writes = append(writes, &c)
		}
	}

	// The pool's backends the answer lacks. Read them all before writing:
	// an iterator must not run across writes to its table.
	it, err := txn.Get(tableBackends, indexPool, pool)
	if err != nil {
		return ch, fmt.Errorf("registry: list backends of %s: %w", pool, err)
	}
	var lacking []*Backend
	for obj := it.Next(); obj != nil; obj = it.Next() {
		if b := obj.(*Backend); !in[b.Address] && (b.Discovered || b.Vanished) {
			lacking = append(lacking, b)
		}
	}
	var deletes []*Backend
	for _, old := range lacking {
		c := *old
		if c.Discovered {
			c.Discovered = false
			c.Vanished = !c.Configured
		}
		switch {
		case c.Vanished && idle != nil && idle(c.ID()):
			deletes = append(deletes, old)
			ch.Removed = append(ch.Removed, c.Address)
		case c != *old:
			writes = append(writes, &c)
			if c.Vanished {
				ch.Vanished = append(ch.Vanished, c.Address)
			}
		}
	}

	if len(writes) == 0 && len(deletes) == 0 {
		return ch, nil
	}
	for _, b := range writes {
		if err := txn.Insert(tableBackends, b); err != nil {
			return DiscoveryChange{}, fmt.Errorf("registry: write backend %s: %w", b.Address, err)
		}
	}
	for _, b := range deletes {
		if err := txn.Delete(tableBackends, b); err != nil {
			return DiscoveryChange{}, fmt.Errorf("registry: delete backend %s: %w", b.Address, err)
		}
	}
	txn.Commit()
	return ch, nil
}

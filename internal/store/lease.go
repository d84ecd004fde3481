package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/invitebot/invitebot/flows"
)

var (
	_ flows.Leaser       = (*DB)(nil)
	_ flows.LeaseSweeper = (*DB)(nil)
)

// getLease returns the lease record name, or a zero Lease (epoch 0) if it
// was never taken.
func getLease(tx *bolt.Tx, name string) (flows.Lease, error) {
	l := flows.Lease{Name: name}
	raw := tx.Bucket(bucketLeases).Get([]byte(name))
	if raw == nil {
		return l, nil
	}
	if err := decode(raw, &l); err != nil {
		return l, fmt.Errorf("decode lease %s: %w", name, err)
	}
	return l, nil
}

func putLease(tx *bolt.Tx, l flows.Lease) error {
	raw, err := encode(l)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketLeases).Put([]byte(l.Name), raw)
}

// AcquireLease implements flows.Leaser on this process's clock: a bbolt
// file has one process, so the lease only matters across restarts and for
// code shared with the PostgreSQL store.
func (db *DB) AcquireLease(_ context.Context, name, holder string, ttl time.Duration) (flows.Lease, error) {
	var got flows.Lease
	err := db.db.Update(func(tx *bolt.Tx) error {
		cur, err := getLease(tx, name)
		if err != nil {
			return err
		}
		now := db.now()
		if cur.Holder != holder && cur.Holder != "" && now.Before(cur.Expires) {
			return &flows.LeaseHeldError{Current: cur}
		}
		got = cur
		if cur.Holder != holder {
			got.Holder, got.Epoch = holder, cur.Epoch+1
		}
		got.Expires = now.Add(ttl)
		return putLease(tx, got)
	})
	if err != nil {
		return flows.Lease{}, err
	}
	return got, nil
}

// ReleaseLease implements flows.Leaser. The record stays, without a
// holder and expiring now (for DeleteStaleLeases), so that the next
// holder's epoch is still one more.
func (db *DB) ReleaseLease(_ context.Context, l flows.Lease) error {
	return db.db.Update(func(tx *bolt.Tx) error {
		cur, err := getLease(tx, l.Name)
		if err != nil || cur.Holder != l.Holder || cur.Epoch != l.Epoch {
			return err
		}
		cur.Holder, cur.Expires = "", db.now()
		return putLease(tx, cur)
	})
}

// DeleteStaleLeases implements flows.LeaseSweeper in one transaction: it
// reads the leases under prefix (keys are in order, so only those) and
// deletes the limit that expired or were released earliest, age or more
// ago. A lease released by an earlier version has no expiry and counts
// as released long ago.
func (db *DB) DeleteStaleLeases(_ context.Context, prefix string, age time.Duration, limit int) (int, error) {
	if prefix == "" {
		return 0, errors.New("delete stale leases: empty prefix")
	}
	n := 0
	err := db.db.Update(func(tx *bolt.Tx) error {
		before := db.now().Add(-age)
		var stale []flows.Lease
		c := tx.Bucket(bucketLeases).Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
			var l flows.Lease
			if err := decode(v, &l); err != nil {
				return fmt.Errorf("decode lease %s: %w", k, err)
			}
			if string(k) != flows.LeaseBackground && l.Expires.Before(before) {
				l.Name = string(k)
				stale = append(stale, l)
			}
		}
		slices.SortFunc(stale, func(a, b flows.Lease) int { return a.Expires.Compare(b.Expires) })
		if len(stale) > limit {
			stale = stale[:limit]
		}
		for _, l := range stale {
			if err := tx.Bucket(bucketLeases).Delete([]byte(l.Name)); err != nil {
				return err
			}
		}
		n = len(stale)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// checkFence returns ErrFenced if ctx is fenced (flows.WithFence) with a
// lease that its holder no longer holds at that epoch.
func checkFence(ctx context.Context, tx *bolt.Tx) error {
	l, ok := flows.Fence(ctx)
	if !ok {
		return nil
	}
	cur, err := getLease(tx, l.Name)
	if err != nil {
		return err
	}
	if cur.Holder != l.Holder || cur.Epoch != l.Epoch {
		return fmt.Errorf("lease %q is at epoch %d, not %s's %d: %w", l.Name, cur.Epoch, l.Holder, l.Epoch, flows.ErrFenced)
	}
	return nil
}

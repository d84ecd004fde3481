package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/invitebot/invitebot/flows"
)

// Export reads everything the store holds, in one read transaction.
func (db *DB) Export(_ context.Context) (*flows.Snapshot, error) {
	snap := &flows.Snapshot{SignIn: map[string][]byte{}, SignInExpires: map[string]time.Time{}}
	err := db.db.View(func(tx *bolt.Tx) error {
		recs, _, exp, _ := signInBuckets(tx)
		if recs != nil {
			if err := recs.ForEach(func(k, v []byte) error {
				snap.SignIn[string(k)] = bytes.Clone(v)
				if at := getOrNil(exp, k); len(at) == 8 {
					snap.SignInExpires[string(k)] = time.Unix(0, int64(binary.BigEndian.Uint64(at))).UTC()
				}
				return nil
			}); err != nil {
				return err
			}
		}
		err := tx.Bucket(bucketInvitations).ForEach(func(k, v []byte) error {
			var inv flows.Invitation
			if err := decode(v, &inv); err != nil {
				return fmt.Errorf("decode invitation %s: %w", k, err)
			}
			snap.Invitations = append(snap.Invitations, &inv)
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketGuests).ForEach(func(k, v []byte) error {
			var g flows.Guest
			if err := decode(v, &g); err != nil {
				return fmt.Errorf("decode guest %s: %w", k, err)
			}
			snap.Guests = append(snap.Guests, g)
			return nil
		})
		if err != nil {
			return err
		}
		// Oldest first, as Invitations lists them.
		sort.SliceStable(snap.Invitations, func(i, j int) bool {
			a, b := snap.Invitations[i], snap.Invitations[j]
			if !a.CreatedAt.Equal(b.CreatedAt) {
				return a.CreatedAt.Before(b.CreatedAt)
			}
			return a.ID < b.ID
		})
		return tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error {
			var ev flows.Event
			if err := decode(v, &ev); err != nil {
				return fmt.Errorf("decode audit event: %w", err)
			}
			snap.Audit = append(snap.Audit, ev)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return snap, nil
}

// ErrNotEmpty is returned by Import into a store that holds records.
var ErrNotEmpty = errors.New("the store is not empty")

// Import writes snap into the empty store in one transaction: the
// invitations with their indexes (their history is not appended to the
// audit log again), the guests, the audit log in snap's order, and the
// sign-in records.
func (db *DB) Import(_ context.Context, snap *flows.Snapshot) error {
	return db.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketInvitations, bucketGuests, bucketAudit, bucketSignIn} {
			if b := tx.Bucket(b); b != nil {
				if k, _ := b.Cursor().First(); k != nil {
					return ErrNotEmpty
				}
			}
		}
		if len(snap.SignIn) > 0 {
			b, err := signInBucket(tx)
			if err != nil {
				return err
			}
			for k, v := range snap.SignIn {
				if err := b.Put([]byte(k), v); err != nil {
					return err
				}
				if err := setSignInExpiry(tx, k, snap.SignInExpires[k]); err != nil {
					return err
				}
			}
		}
		for _, inv := range snap.Invitations {
			// As stored: its history is already in snap.Audit.
			raw, err := encode(inv)
			if err != nil {
				return err
			}
			if tx.Bucket(bucketInvitations).Get([]byte(inv.ID)) != nil {
				return fmt.Errorf("invitation %s: repeated", inv.ID)
			}
			if k := inv.Origin.UniqueKey(); k != "" && tx.Bucket(bucketByOrigin).Get([]byte(k)) != nil {
				return fmt.Errorf("invitation %s: origin %s repeats an earlier invitation's", inv.ID, k)
			}
			if err := tx.Bucket(bucketInvitations).Put([]byte(inv.ID), raw); err != nil {
				return err
			}
			if err := index(tx, inv); err != nil {
				return fmt.Errorf("invitation %s: %w", inv.ID, err)
			}
		}
		for _, g := range snap.Guests {
			raw, err := encode(g)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketGuests).Put([]byte(g.ObjectID), raw); err != nil {
				return err
			}
		}
		return appendAudit(tx, snap.Audit)
	})
}

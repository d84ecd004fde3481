package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/invitebot/invitebot/flows"
)

func getInvitation(tx *bolt.Tx, id string) (*flows.Invitation, error) {
	raw := tx.Bucket(bucketInvitations).Get([]byte(id))
	if raw == nil {
		return nil, flows.ErrNotFound
	}
	var inv flows.Invitation
	if err := decode(raw, &inv); err != nil {
		return nil, fmt.Errorf("decode invitation %s: %w", id, err)
	}
	return &inv, nil
}

// pair is an index key: a value and an invitation ID.
func pair(value, id string) []byte { return []byte(value + "\x00" + id) }

// inFlight returns the unfinished invitation that holds inv's address, if
// it is another one.
func inFlight(tx *bolt.Tx, inv *flows.Invitation) (*flows.Invitation, error) {
	id := tx.Bucket(bucketInFlight).Get([]byte(flows.NormalizeEmail(inv.Request.Email)))
	if id == nil || string(id) == inv.ID {
		return nil, nil
	}
	return getInvitation(tx, string(id))
}

// putInvitation writes inv (old is what was stored, nil for a new one),
// keeps the indexes, and appends inv's events after old's to the audit
// log. The address index names the address's unfinished invitation: an
// unfinished inv takes it (ErrInFlight if another holds it), a finished
// one gives it up; writing any other invitation leaves it alone.
func putInvitation(tx *bolt.Tx, old, inv *flows.Invitation) error {
	raw, err := encode(inv)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketInvitations).Put([]byte(inv.ID), raw); err != nil {
		return err
	}
	known := 0
	if old != nil {
		known = len(old.History)
		if err := unindex(tx, old); err != nil {
			return err
		}
	}
	if err := index(tx, inv); err != nil {
		return err
	}
	return appendAudit(tx, inv.History[min(known, len(inv.History)):])
}

// appendAudit appends events to the audit log, in order.
func appendAudit(tx *bolt.Tx, events []flows.Event) error {
	audit := tx.Bucket(bucketAudit)
	for _, ev := range events {
		seq, err := audit.NextSequence()
		if err != nil {
			return err
		}
		raw, err := encode(ev)
		if err != nil {
			return err
		}
		if err := audit.Put(itob(seq), raw); err != nil {
			return err
		}
	}
	return nil
}

// unindex removes inv's entries from the secondary indexes.
func unindex(tx *bolt.Tx, inv *flows.Invitation) error {
	email := flows.NormalizeEmail(inv.Request.Email)
	flight := tx.Bucket(bucketInFlight)
	if string(flight.Get([]byte(email))) == inv.ID {
		if err := flight.Delete([]byte(email)); err != nil {
			return err
		}
	}
	if k := inv.Origin.UniqueKey(); k != "" && string(tx.Bucket(bucketByOrigin).Get([]byte(k))) == inv.ID {
		if err := tx.Bucket(bucketByOrigin).Delete([]byte(k)); err != nil {
			return err
		}
	}
	for _, del := range []struct {
		bucket []byte
		key    []byte
	}{
		{bucketByAddress, pair(email, inv.ID)},
		{bucketByInviter, pair(inv.Inviter.UserID, inv.ID)},
		{bucketTracked, []byte(inv.ID)},
		{bucketUnfinished, []byte(inv.ID)},
	} {
		if err := tx.Bucket(del.bucket).Delete(del.key); err != nil {
			return err
		}
	}
	return nil
}

// index adds inv's entries to the secondary indexes.
func index(tx *bolt.Tx, inv *flows.Invitation) error {
	email := flows.NormalizeEmail(inv.Request.Email)
	if !inv.State.Terminal() {
		other, err := inFlight(tx, inv)
		if err != nil {
			return err
		}
		if other != nil {
			return fmt.Errorf("invitation %s for the address is in flight: %w", other.ID, flows.ErrInFlight)
		}
		if err := tx.Bucket(bucketInFlight).Put([]byte(email), []byte(inv.ID)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUnfinished).Put([]byte(inv.ID), nil); err != nil {
			return err
		}
	}
	if k := inv.Origin.UniqueKey(); k != "" {
		if err := tx.Bucket(bucketByOrigin).Put([]byte(k), []byte(inv.ID)); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketByAddress).Put(pair(email, inv.ID), nil); err != nil {
		return err
	}
	if err := tx.Bucket(bucketByInviter).Put(pair(inv.Inviter.UserID, inv.ID), nil); err != nil {
		return err
	}
	if inv.Tracked() {
		return tx.Bucket(bucketTracked).Put([]byte(inv.ID), nil)
	}
	return nil
}

// CreateInvitation implements flows.Store.
func (db *DB) CreateInvitation(ctx context.Context, inv *flows.Invitation) (*flows.Invitation, error) {
	var existing *flows.Invitation
	var verdict error
	// Batch: concurrent submissions share one fsync'd transaction (the
	// Slack ack waits for this write). bbolt may run fn again on its own,
	// so it starts from scratch each time.
	err := db.db.Batch(func(tx *bolt.Tx) error {
		existing, verdict = nil, nil
		if err := checkFence(ctx, tx); err != nil {
			return err
		}
		if k := inv.Origin.UniqueKey(); k != "" {
			if id := tx.Bucket(bucketByOrigin).Get([]byte(k)); id != nil {
				old, err := getInvitation(tx, string(id))
				if err != nil {
					return err
				}
				existing, verdict = old, flows.ErrDuplicate
				return nil
			}
		}
		if old, err := inFlight(tx, inv); err != nil || old != nil {
			existing, verdict = old, flows.ErrInFlight
			return err
		}
		return putInvitation(tx, nil, inv)
	})
	if err != nil {
		return nil, fmt.Errorf("store: create invitation %s: %w", inv.ID, err)
	}
	if verdict != nil {
		return existing, verdict
	}
	return inv.Clone(), nil
}

// Invitation implements flows.Store.
func (db *DB) Invitation(_ context.Context, id string) (*flows.Invitation, error) {
	var inv *flows.Invitation
	err := db.db.View(func(tx *bolt.Tx) error {
		var err error
		inv, err = getInvitation(tx, id)
		return err
	})
	return inv, err
}

// UpdateInvitation implements flows.Store.
func (db *DB) UpdateInvitation(ctx context.Context, id string, fn func(*flows.Invitation) error) (*flows.Invitation, error) {
	var inv *flows.Invitation
	err := db.db.Update(func(tx *bolt.Tx) error {
		if err := checkFence(ctx, tx); err != nil {
			return err
		}
		old, err := getInvitation(tx, id)
		if err != nil {
			return err
		}
		inv = old.Clone()
		if err := fn(inv); err != nil {
			return err
		}
		return putInvitation(tx, old, inv)
	})
	if err != nil {
		return nil, err
	}
	return inv, nil
}

// Invitations implements flows.Store. It reads the candidates from the
// most selective index the filter allows, then applies the whole filter.
func (db *DB) Invitations(_ context.Context, f flows.InvitationFilter) ([]*flows.Invitation, error) {
	var out []*flows.Invitation
	err := db.db.View(func(tx *bolt.Tx) error {
		keep := func(id []byte) error {
			inv, err := getInvitation(tx, string(id))
			if err != nil {
				return err
			}
			if f.Match(inv) {
				out = append(out, inv)
			}
			return nil
		}
		switch {
		case f.OriginKind != "" && f.OriginKey != "":
			if id := tx.Bucket(bucketByOrigin).Get([]byte(flows.Origin{Kind: f.OriginKind, Key: f.OriginKey}.UniqueKey())); id != nil {
				return keep(id)
			}
			return nil
		case len(f.Emails) > 0:
			var emails []string
			for _, e := range f.Emails {
				emails = append(emails, flows.NormalizeEmail(e))
			}
			slices.Sort(emails)
			for _, e := range slices.Compact(emails) {
				if err := eachPaired(tx.Bucket(bucketByAddress), e, keep); err != nil {
					return err
				}
			}
			return nil
		case f.Unfinished:
			return tx.Bucket(bucketUnfinished).ForEach(func(id, _ []byte) error { return keep(id) })
		case f.Tracked:
			return tx.Bucket(bucketTracked).ForEach(func(id, _ []byte) error { return keep(id) })
		case f.Inviter != "":
			return eachPaired(tx.Bucket(bucketByInviter), f.Inviter, keep)
		}
		return tx.Bucket(bucketInvitations).ForEach(func(id, _ []byte) error { return keep(id) })
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b *flows.Invitation) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, nil
}

// eachPaired calls fn with the ID of every key value\x00id in b.
func eachPaired(b *bolt.Bucket, value string, fn func(id []byte) error) error {
	prefix := []byte(value + "\x00")
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if err := fn(bytes.Clone(k[len(prefix):])); err != nil {
			return err
		}
	}
	return nil
}

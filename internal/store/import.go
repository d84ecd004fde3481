package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/invitebot/invitebot/flows"
)

// ImportInvitations writes invs as they are, with their indexes and audit events, in
// one transaction: all of them or, on error, none. It is for seeding and
// copying a store, not for the flows (which go through CreateInvitation's
// checks). An ID already in the store is refused. Give invs in creation
// order: the address index keeps the last one written per address.
func (db *DB) ImportInvitations(_ context.Context, invs []*flows.Invitation) error {
	return db.db.Update(func(tx *bolt.Tx) error {
		for _, inv := range invs {
			if tx.Bucket(bucketInvitations).Get([]byte(inv.ID)) != nil {
				return fmt.Errorf("store: import invitation %s: already in the store", inv.ID)
			}
			if err := putInvitation(tx, nil, inv); err != nil {
				return fmt.Errorf("store: import invitation %s: %w", inv.ID, err)
			}
		}
		return nil
	})
}

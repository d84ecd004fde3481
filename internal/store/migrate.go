package store

import (
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/invitebot/invitebot/flows"
)

// originV1 is how schema version 1 recorded where an invitation came from.
type originV1 struct {
	ViewID string `json:"viewId"` // the dialog's view ID, or "bulk:<row key>:<inviter>:<attempt>"
	Bulk   string `json:"bulk"`   // a bulk row: "guests.csv line 7"
}

// origin is the Origin a version 1 record meant.
func (o originV1) origin(inv *flows.Invitation) flows.Origin {
	switch {
	case o.Bulk != "":
		return flows.Origin{Kind: flows.OriginBulk, Key: strings.TrimPrefix(o.ViewID, "bulk:"), Name: o.Bulk}
	case o.ViewID != "":
		return flows.Origin{Kind: flows.OriginDialog, Key: o.ViewID}
	case inv.Request.ConvertFrom != "":
		return flows.Origin{Kind: flows.OriginConvert}
	}
	return flows.Origin{Kind: flows.OriginDialog}
}

// migrate brings a file of schema version n up to schemaVersion, in the
// transaction that opens it: version 1's invitations get their Origin, and
// the indexes are rebuilt from the invitations.
func migrate(tx *bolt.Tx, n uint64) error {
	if n >= schemaVersion {
		return nil
	}
	b := tx.Bucket(bucketInvitations)
	var invs []*flows.Invitation
	err := b.ForEach(func(k, v []byte) error {
		var inv flows.Invitation
		if err := decode(v, &inv); err != nil {
			return fmt.Errorf("decode invitation %s: %w", k, err)
		}
		if n < 2 {
			var old originV1
			if err := decode(v, &old); err != nil {
				return fmt.Errorf("decode invitation %s: %w", k, err)
			}
			inv.Origin = old.origin(&inv)
		}
		invs = append(invs, &inv)
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketByView, bucketByEmail, bucketByOrigin, bucketInFlight, bucketByAddress, bucketByInviter, bucketTracked, bucketUnfinished} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
	}
	for _, name := range buckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	// Oldest first: if an older file let two invitations for one address
	// be in flight (its address index named the last written one), the
	// newer one holds the address; both stay unfinished.
	slices.SortFunc(invs, func(a, c *flows.Invitation) int { return a.CreatedAt.Compare(c.CreatedAt) })
	flight := tx.Bucket(bucketInFlight)
	for _, inv := range invs {
		if n < 2 {
			raw, err := encode(inv)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(inv.ID), raw); err != nil {
				return err
			}
		}
		if !inv.State.Terminal() {
			// Clear an older holder of the address first.
			if err := flight.Delete([]byte(flows.NormalizeEmail(inv.Request.Email))); err != nil {
				return err
			}
		}
		if err := index(tx, inv); err != nil {
			return err
		}
	}
	return nil
}

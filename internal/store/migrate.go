package store

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

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
// transaction that opens it (at now): version 1's invitations get their
// Origin, the indexes of versions before 3 are rebuilt from the
// invitations, and the sign-in records of versions before 4 get their
// expiries.
func migrate(tx *bolt.Tx, n uint64, now time.Time) error {
	if n < 3 {
		if err := migrateIndexes(tx, n); err != nil {
			return err
		}
	}
	if n < 4 {
		return migrateSignInExpiry(tx, now)
	}
	return nil
}

// legacySignInTTL is how long the sign-in adapter's connect links and
// sign-ins in progress lasted when version 3 wrote them without an expiry.
const legacySignInTTL = 10 * time.Minute

// migrateSignInExpiry gives the connect links ("link/…") and sign-ins in
// progress ("flow/…") that version 3 stored without an expiry one: they
// lasted legacySignInTTL at most, so now plus that covers any still valid.
// The connections ("conn/…") are kept until deleted, as before.
func migrateSignInExpiry(tx *bolt.Tx, now time.Time) error {
	b := tx.Bucket(bucketSignIn)
	if b == nil {
		return nil
	}
	var keys []string
	err := b.ForEach(func(k, _ []byte) error {
		if bytes.HasPrefix(k, []byte("link/")) || bytes.HasPrefix(k, []byte("flow/")) {
			keys = append(keys, string(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := setSignInExpiry(tx, k, now.Add(legacySignInTTL)); err != nil {
			return err
		}
	}
	return nil
}

// migrateIndexes gives version 1's invitations their Origin and rebuilds
// the indexes from the invitations.
func migrateIndexes(tx *bolt.Tx, n uint64) error {
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

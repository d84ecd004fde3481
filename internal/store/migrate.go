package store

import (
	"fmt"
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

// migrateOrigins rewrites a version 1 file's invitations with their
// Origin and replaces the view index with the origin index.
func migrateOrigins(tx *bolt.Tx) error {
	b := tx.Bucket(bucketInvitations)
	var invs []*flows.Invitation
	err := b.ForEach(func(k, v []byte) error {
		var inv flows.Invitation
		var old originV1
		if err := decode(v, &inv); err != nil {
			return fmt.Errorf("decode invitation %s: %w", k, err)
		}
		if err := decode(v, &old); err != nil {
			return fmt.Errorf("decode invitation %s: %w", k, err)
		}
		if inv.Origin.Kind == "" {
			inv.Origin = old.origin(&inv)
		}
		invs = append(invs, &inv)
		return nil
	})
	if err != nil {
		return err
	}
	byOrigin := tx.Bucket(bucketByOrigin)
	for _, inv := range invs { // not in ForEach: bbolt forbids writes while iterating
		raw, err := encode(inv)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(inv.ID), raw); err != nil {
			return err
		}
		if k := inv.Origin.UniqueKey(); k != "" {
			if err := byOrigin.Put([]byte(k), []byte(inv.ID)); err != nil {
				return err
			}
		}
	}
	if tx.Bucket(bucketByView) != nil {
		return tx.DeleteBucket(bucketByView)
	}
	return nil
}

package pgstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invitebot/invitebot/flows"
)

// Export reads everything the store holds, in one repeatable-read
// transaction (a consistent snapshot while replicas write).
func (db *DB) Export(ctx context.Context) (*flows.Snapshot, error) {
	snap := &flows.Snapshot{SignIn: map[string][]byte{}, SignInExpires: map[string]time.Time{}}
	err := db.tx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT doc FROM invitations ORDER BY created_ns, id")
		if err != nil {
			return err
		}
		if snap.Invitations, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*flows.Invitation, error) {
			return scanInvitation(row)
		}); err != nil {
			return err
		}
		if snap.Guests, err = collectDocs[flows.Guest](ctx, tx, "SELECT doc FROM guests ORDER BY object_id"); err != nil {
			return err
		}
		if snap.Audit, err = collectDocs[flows.Event](ctx, tx, "SELECT doc FROM audit ORDER BY seq"); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, "SELECT key, value, expires FROM signin")
		if err != nil {
			return err
		}
		var key string
		var value []byte
		var expires *time.Time
		_, err = pgx.ForEachRow(rows, []any{&key, &value, &expires}, func() error {
			snap.SignIn[key] = bytes.Clone(value)
			if expires != nil {
				snap.SignInExpires[key] = expires.UTC()
			}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return snap, nil
}

func collectDocs[T any](ctx context.Context, tx pgx.Tx, sql string) ([]T, error) {
	rows, err := tx.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (T, error) {
		var doc []byte
		var v T
		if err := row.Scan(&doc); err != nil {
			return v, err
		}
		return v, json.Unmarshal(doc, &v)
	})
}

// ErrNotEmpty is returned by Import into a database that holds records.
var ErrNotEmpty = errors.New("the database is not empty")

// Import writes snap into the empty database in one transaction: the
// invitations (their history is not appended to the audit log again), the
// guests, the audit log in snap's order, and the sign-in records.
func (db *DB) Import(ctx context.Context, snap *flows.Snapshot) error {
	return db.write(ctx, func(tx pgx.Tx) error {
		// Keep concurrent writers (a replica started meanwhile) out.
		if _, err := tx.Exec(ctx, "LOCK TABLE invitations, guests, audit, signin IN EXCLUSIVE MODE"); err != nil {
			return err
		}
		var used bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM invitations) OR EXISTS (SELECT 1 FROM guests)
			OR EXISTS (SELECT 1 FROM audit) OR EXISTS (SELECT 1 FROM signin)`).Scan(&used); err != nil {
			return err
		}
		if used {
			return ErrNotEmpty
		}
		for _, inv := range snap.Invitations {
			inserted, err := putInvitation(ctx, tx, inv, true, len(inv.History))
			if err != nil {
				return fmt.Errorf("invitation %s: %w", inv.ID, err)
			}
			if !inserted {
				return fmt.Errorf("invitation %s: its ID, origin or address in flight repeats an earlier invitation's", inv.ID)
			}
		}
		for _, g := range snap.Guests {
			doc, err := json.Marshal(g)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO guests (object_id, doc) VALUES ($1, $2)", g.ObjectID, doc); err != nil {
				return fmt.Errorf("guest %s: %w", g.ObjectID, err)
			}
		}
		for k, v := range snap.SignIn {
			if _, err := tx.Exec(ctx, "INSERT INTO signin (key, value, expires) VALUES ($1, $2, $3)", k, v, nullTime(snap.SignInExpires[k])); err != nil {
				return fmt.Errorf("sign-in record: %w", err)
			}
		}
		rows := make([][]any, len(snap.Audit))
		for i, ev := range snap.Audit {
			doc, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			rows[i] = []any{ns(ev.At), ev.InvitationID, doc}
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"audit"}, []string{"at_ns", "invitation_id", "doc"}, pgx.CopyFromRows(rows))
		return err
	})
}

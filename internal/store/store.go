// Package store implements flows.Store on bbolt: one file, one writer
// process. Values are versioned JSON envelopes so the schema can evolve;
// every invitation write appends its new history events to the audit
// bucket in the same transaction.
package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/invitebot/invitebot/flows"
)

// schemaVersion is the version of the values this code writes. Version 2
// keeps an invitation's origin in Invitation.Origin (version 1 had a Slack
// view ID and a bulk row instead); Open migrates a version 1 file.
const schemaVersion = 2

var (
	bucketInvitations = []byte("invitations") // id → invitation
	bucketByOrigin    = []byte("by_origin")   // Origin.UniqueKey → invitation id
	bucketByView      = []byte("by_view")     // version 1: Slack view id → invitation id
	bucketByEmail     = []byte("by_email")    // normalised email → latest invitation id
	bucketGuests      = []byte("guests")      // Entra object id → guest
	bucketAudit       = []byte("audit")       // big-endian sequence → event
	bucketMeta        = []byte("meta")
	keySchema         = []byte("schema")
)

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("database is locked by another process (is another invitebot running?)")

// Options tune Open.
type Options struct {
	// LockTimeout bounds the wait for the file lock; zero means 1s.
	LockTimeout time.Duration
	// NoSync skips fsync; for tests only, never in production.
	NoSync bool
}

// DB is the bbolt-backed store.
type DB struct {
	db   *bolt.DB
	path string
}

var _ flows.Store = (*DB)(nil)

// Open opens or creates (mode 0600) the store at path.
func Open(path string, opts Options) (*DB, error) {
	if opts.LockTimeout == 0 {
		opts.LockTimeout = time.Second
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoSync: opts.NoSync})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketInvitations, bucketByOrigin, bucketByEmail, bucketGuests, bucketAudit, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySchema); v != nil {
			n := binary.BigEndian.Uint64(v)
			if n > schemaVersion {
				return fmt.Errorf("schema version %d is newer than this invitebot understands (%d): upgrade invitebot", n, schemaVersion)
			}
			if n < 2 {
				if err := migrateOrigins(tx); err != nil {
					return fmt.Errorf("migrate to schema version 2: %w", err)
				}
			}
		}
		return meta.Put(keySchema, itob(schemaVersion))
	})
	if err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &DB{db: bdb, path: path}, nil
}

// Close closes the file, waiting for open transactions.
func (db *DB) Close() error { return db.db.Close() }

// Path returns the file's path.
func (db *DB) Path() string { return db.path }

// Check verifies the file's integrity.
func (db *DB) Check() error {
	return db.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

type envelope struct {
	V    int             `json:"v"`
	Data json.RawMessage `json:"data"`
}

func encode(v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(envelope{V: schemaVersion, Data: data})
}

// decode copies out of a bbolt value (valid only inside its transaction).
func decode(raw []byte, v any) error {
	var e envelope
	if err := json.Unmarshal(raw, &e); err != nil {
		return err
	}
	if e.V > schemaVersion {
		return fmt.Errorf("value of schema version %d is newer than %d", e.V, schemaVersion)
	}
	return json.Unmarshal(e.Data, v)
}

func itob(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

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

// putInvitation writes inv and its indexes, and appends the events after
// the first `known` ones to the audit log.
func putInvitation(tx *bolt.Tx, inv *flows.Invitation, known int) error {
	raw, err := encode(inv)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketInvitations).Put([]byte(inv.ID), raw); err != nil {
		return err
	}
	if k := inv.Origin.UniqueKey(); k != "" {
		if err := tx.Bucket(bucketByOrigin).Put([]byte(k), []byte(inv.ID)); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketByEmail).Put([]byte(flows.NormalizeEmail(inv.Request.Email)), []byte(inv.ID)); err != nil {
		return err
	}
	audit := tx.Bucket(bucketAudit)
	for _, ev := range inv.History[min(known, len(inv.History)):] {
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

// CreateInvitation implements flows.Store.
func (db *DB) CreateInvitation(_ context.Context, inv *flows.Invitation) (*flows.Invitation, error) {
	var existing *flows.Invitation
	var verdict error
	// Batch: concurrent submissions share one fsync'd transaction (the
	// Slack ack waits for this write). bbolt may run fn again on its own,
	// so it starts from scratch each time.
	err := db.db.Batch(func(tx *bolt.Tx) error {
		existing, verdict = nil, nil
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
		if id := tx.Bucket(bucketByEmail).Get([]byte(flows.NormalizeEmail(inv.Request.Email))); id != nil {
			old, err := getInvitation(tx, string(id))
			if err != nil {
				return err
			}
			if !old.State.Terminal() {
				existing, verdict = old, flows.ErrInFlight
				return nil
			}
		}
		return putInvitation(tx, inv, 0)
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
func (db *DB) UpdateInvitation(_ context.Context, id string, fn func(*flows.Invitation) error) (*flows.Invitation, error) {
	var inv *flows.Invitation
	err := db.db.Update(func(tx *bolt.Tx) error {
		var err error
		if inv, err = getInvitation(tx, id); err != nil {
			return err
		}
		known := len(inv.History)
		if err := fn(inv); err != nil {
			return err
		}
		return putInvitation(tx, inv, known)
	})
	if err != nil {
		return nil, err
	}
	return inv, nil
}

// Invitations implements flows.Store.
func (db *DB) Invitations(_ context.Context, f flows.InvitationFilter) ([]*flows.Invitation, error) {
	var out []*flows.Invitation
	err := db.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInvitations).ForEach(func(k, v []byte) error {
			var inv flows.Invitation
			if err := decode(v, &inv); err != nil {
				return fmt.Errorf("decode invitation %s: %w", k, err)
			}
			if f.Match(&inv) {
				out = append(out, &inv)
			}
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, err
}

// SaveGuest implements flows.Store.
func (db *DB) SaveGuest(_ context.Context, g flows.Guest) error {
	raw, err := encode(g)
	if err != nil {
		return err
	}
	return db.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGuests).Put([]byte(g.ObjectID), raw)
	})
}

// Guest implements flows.Store.
func (db *DB) Guest(_ context.Context, objectID string) (*flows.Guest, error) {
	var g *flows.Guest
	err := db.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketGuests).Get([]byte(objectID))
		if raw == nil {
			return flows.ErrNotFound
		}
		g = &flows.Guest{}
		return decode(raw, g)
	})
	return g, err
}

// AuditLog implements flows.Store.
func (db *DB) AuditLog(_ context.Context, since time.Time) ([]flows.Event, error) {
	var out []flows.Event
	err := db.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error {
			var ev flows.Event
			if err := decode(v, &ev); err != nil {
				return err
			}
			if !ev.At.Before(since) {
				out = append(out, ev)
			}
			return nil
		})
	})
	return out, err
}

// Stats counts the records, for metrics and doctor.
type Stats struct{ Invitations, Guests, AuditEntries int }

// Stats returns the record counts.
func (db *DB) Stats() (Stats, error) {
	var s Stats
	err := db.db.View(func(tx *bolt.Tx) error {
		s.Invitations = tx.Bucket(bucketInvitations).Stats().KeyN
		s.Guests = tx.Bucket(bucketGuests).Stats().KeyN
		s.AuditEntries = tx.Bucket(bucketAudit).Stats().KeyN
		return nil
	})
	return s, err
}

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
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/invitebot/invitebot/flows"
)

// schemaVersion is the version of the values this code writes. Version 2
// keeps an invitation's origin in Invitation.Origin (version 1 had a Slack
// view ID and a bulk row instead); version 3 keeps the indexes below
// (version 2's address index named each address's last written
// invitation, not the one in flight); version 4 keeps the sign-in
// records' expiries (signin.go). Open migrates an older file.
const schemaVersion = 4

var (
	bucketInvitations = []byte("invitations") // id → invitation
	bucketByOrigin    = []byte("by_origin")   // Origin.UniqueKey → invitation id
	bucketInFlight    = []byte("in_flight")   // normalised email → its unfinished invitation's id
	bucketByAddress   = []byte("by_address")  // normalised email \x00 id → nothing
	bucketByInviter   = []byte("by_inviter")  // inviter's Slack user ID \x00 id → nothing
	bucketTracked     = []byte("tracked")     // id → nothing, while Invitation.Tracked
	bucketUnfinished  = []byte("unfinished")  // id → nothing, while its state is not Terminal
	bucketLeases      = []byte("leases")      // lease name → lease
	bucketGuests      = []byte("guests")      // Entra object id → guest
	bucketAudit       = []byte("audit")       // big-endian sequence → event
	bucketMeta        = []byte("meta")
	keySchema         = []byte("schema")

	// Versions 1 and 2 only.
	bucketByView  = []byte("by_view")  // Slack view id → invitation id
	bucketByEmail = []byte("by_email") // normalised email → last written invitation id
)

// buckets are the buckets of the current version.
var buckets = [][]byte{bucketInvitations, bucketByOrigin, bucketInFlight, bucketByAddress, bucketByInviter, bucketTracked, bucketUnfinished,
	bucketLeases, bucketGuests, bucketAudit, bucketMeta}

// ErrLocked is returned by Open when another process holds the file.
var ErrLocked = errors.New("database is locked by another process (is another invitebot running?)")

// Options tune Open.
type Options struct {
	// LockTimeout bounds the wait for the file lock; zero means 1s.
	LockTimeout time.Duration
	// NoSync skips fsync; for tests only, never in production.
	NoSync bool
	// ReadOnly opens an existing file without writing to it (doctor,
	// backup): a missing file is an error (fs.ErrNotExist), nothing is
	// created, and the write methods fail. Several read-only opens may
	// share the file; a writer holding it makes Open fail with ErrLocked.
	ReadOnly bool
}

// DB is the bbolt-backed store.
type DB struct {
	db   *bolt.DB
	path string
	now  func() time.Time
	// signInLocks are the sign-in records' locks (LockSignInRecord).
	signInLocks flows.KeyLocks
}

var _ flows.Store = (*DB)(nil)

// Open opens or creates (mode 0600) the store at path.
func Open(path string, opts Options) (*DB, error) {
	if opts.LockTimeout == 0 {
		opts.LockTimeout = time.Second
	}
	if opts.ReadOnly {
		return openReadOnly(path, opts)
	}
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoSync: opts.NoSync})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySchema); v != nil {
			if err := checkSchema(v); err != nil {
				return err
			}
			n := binary.BigEndian.Uint64(v)
			if err := migrate(tx, n, time.Now()); err != nil {
				return fmt.Errorf("migrate from schema version %d: %w", n, err)
			}
		}
		return meta.Put(keySchema, itob(schemaVersion))
	})
	if err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &DB{db: bdb, path: path, now: time.Now}, nil
}

// checkSchema refuses a file written by a newer invitebot.
func checkSchema(v []byte) error {
	if n := binary.BigEndian.Uint64(v); n > schemaVersion {
		return fmt.Errorf("schema version %d is newer than this invitebot understands (%d): upgrade invitebot", n, schemaVersion)
	}
	return nil
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

// SaveGuest implements flows.Store.
func (db *DB) SaveGuest(ctx context.Context, g flows.Guest) error {
	raw, err := encode(g)
	if err != nil {
		return err
	}
	return db.db.Update(func(tx *bolt.Tx) error {
		if err := checkFence(ctx, tx); err != nil {
			return err
		}
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

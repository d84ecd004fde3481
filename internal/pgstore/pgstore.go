// Package pgstore implements flows.Store and flows.Leaser on PostgreSQL,
// for any number of invitebot replicas sharing one database.
//
// Records are JSON documents beside the columns SQL needs: uniqueness of a
// submission (view_id) and of the address in flight (a partial unique
// index) is the database's, an update is SELECT … FOR UPDATE, fn, UPDATE in
// one transaction, and new history events are appended to the audit table
// in that same transaction. The schema is created and migrated at Open from
// SQL embedded in the binary (migrations/), under an advisory lock.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invitebot/invitebot/flows"
)

// Options tune Open.
type Options struct {
	// Password, if set, is asked for the password of every new connection
	// (an access token, such as Microsoft Entra's for Azure Database for
	// PostgreSQL). Connections are then renewed every TokenLifetime.
	Password func(ctx context.Context) (string, error)
	// TokenLifetime bounds a connection's age when Password is set, so no
	// connection outlives the token it was opened with; zero means 30m.
	TokenLifetime time.Duration

	// noIdlePing turns off pgxpool's ping of connections idle for over a
	// second, for tests: every dead connection is then found by a
	// statement (retry.go).
	noIdlePing bool
}

// DB is the PostgreSQL-backed store.
type DB struct {
	pool    *pgxpool.Pool
	version int
	// signInLocks queue a replica's own holders of a sign-in record's
	// lock before they take its advisory lock (LockSignInRecord).
	signInLocks flows.KeyLocks
}

var (
	_ flows.Store  = (*DB)(nil)
	_ flows.Leaser = (*DB)(nil)
)

// Open connects to the database named by the postgres:// URL (libpq's PG*
// environment variables fill what it leaves out), and creates or migrates
// the schema. Its errors never quote the URL (it may hold a password).
func Open(ctx context.Context, dbURL string, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		// pgx's parse errors may quote the URL, password included.
		return nil, errors.New("open store: invalid PostgreSQL URL")
	}
	if opts.Password != nil {
		cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			pw, err := opts.Password(ctx)
			if err != nil {
				return fmt.Errorf("get the database password: %w", err)
			}
			cc.Password = pw
			return nil
		}
		cfg.MaxConnLifetime = opts.TokenLifetime
		if cfg.MaxConnLifetime <= 0 {
			cfg.MaxConnLifetime = 30 * time.Minute
		}
	}
	if opts.noIdlePing {
		cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	version, err := migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return &DB{pool: pool, version: version}, nil
}

// Close closes the connections.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// Version returns the schema version the database has.
func (db *DB) Version() int { return db.version }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	return db.read(ctx, func(c *pgxpool.Conn) error { return c.Ping(ctx) })
}

// ns is t as Unix nanoseconds, ordered like time.Time (the zero time
// first).
func ns(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

const (
	errUniqueViolation = "23505"
	// The unique constraints' names, as PostgreSQL names them.
	constraintOrigin   = "invitations_origin_uniq_key"
	constraintInFlight = "invitations_in_flight_email"
)

func uniqueViolation(err error) (constraint string, ok bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == errUniqueViolation {
		return pe.ConstraintName, true
	}
	return "", false
}

// write runs fn in a transaction (tx: tried again only if BEGIN found the
// connection dead), after checking ctx's fence (WithFence) in it: the
// lease row is locked for share, so a takeover waits for this
// transaction, and a write by a replica that lost the lease fails with
// flows.ErrFenced.
func (db *DB) write(ctx context.Context, fn func(pgx.Tx) error) error {
	return db.tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if l, ok := flows.Fence(ctx); ok {
			var held bool
			err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM leases
				WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires > now() FOR SHARE)`,
				l.Name, l.Holder, l.Epoch).Scan(&held)
			if err != nil {
				return err
			}
			if !held {
				return fmt.Errorf("lease %q epoch %d of %s: %w", l.Name, l.Epoch, l.Holder, flows.ErrFenced)
			}
		}
		return fn(tx)
	})
}

// putInvitation inserts inv's row (reporting false when a unique key is
// taken) or updates it, and appends its events after the first known ones
// to the audit log. The columns beside the document are computed here, on
// every write, from the record alone.
func putInvitation(ctx context.Context, tx pgx.Tx, inv *flows.Invitation, insert bool, known int) (bool, error) {
	doc, err := json.Marshal(inv)
	if err != nil {
		return false, err
	}
	var uniq *string
	if k := inv.Origin.UniqueKey(); k != "" {
		uniq = &k
	}
	args := []any{inv.ID, string(inv.Origin.Kind), inv.Origin.Key, uniq, inv.Inviter.UserID,
		flows.NormalizeEmail(inv.Request.Email), string(inv.State), !inv.State.Terminal(), inv.Tracked(), ns(inv.CreatedAt), doc}
	var tag pgconn.CommandTag
	if insert {
		tag, err = tx.Exec(ctx, `INSERT INTO invitations (id, origin_kind, origin_key, origin_uniq, inviter,
			email_key, state, in_flight, tracked, created_ns, doc)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`, args...)
	} else {
		tag, err = tx.Exec(ctx, `UPDATE invitations SET origin_kind = $2, origin_key = $3, origin_uniq = $4,
			inviter = $5, email_key = $6, state = $7, in_flight = $8, tracked = $9, created_ns = $10, doc = $11
			WHERE id = $1`, args...)
	}
	if err != nil || tag.RowsAffected() == 0 {
		return false, err
	}
	return true, appendAudit(ctx, tx, inv.History[min(known, len(inv.History)):])
}

func appendAudit(ctx context.Context, tx pgx.Tx, events []flows.Event) error {
	for _, ev := range events {
		doc, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO audit (at_ns, invitation_id, doc) VALUES ($1, $2, $3)",
			ns(ev.At), ev.InvitationID, doc); err != nil {
			return err
		}
	}
	return nil
}

func scanInvitation(row pgx.Row) (*flows.Invitation, error) {
	var doc []byte
	if err := row.Scan(&doc); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, flows.ErrNotFound
		}
		return nil, err
	}
	var inv flows.Invitation
	if err := json.Unmarshal(doc, &inv); err != nil {
		return nil, fmt.Errorf("decode invitation: %w", err)
	}
	return &inv, nil
}

// CreateInvitation implements flows.Store.
func (db *DB) CreateInvitation(ctx context.Context, inv *flows.Invitation) (*flows.Invitation, error) {
	// The insert does nothing on a duplicate submission or an address in
	// flight; the row it collided with is then read (a new statement: it
	// sees the other transaction's commit). That row may have finished in
	// between, freeing the address: then try again.
	for range 10 {
		var existing *flows.Invitation
		var verdict error
		err := db.write(ctx, func(tx pgx.Tx) error {
			existing, verdict = nil, nil
			inserted, err := putInvitation(ctx, tx, inv, true, 0)
			if err != nil || inserted {
				return err
			}
			if k := inv.Origin.UniqueKey(); k != "" {
				existing, err = scanInvitation(tx.QueryRow(ctx, "SELECT doc FROM invitations WHERE origin_uniq = $1", k))
				if err == nil {
					verdict = flows.ErrDuplicate
					return nil
				}
				if !errors.Is(err, flows.ErrNotFound) {
					return err
				}
			}
			existing, err = scanInvitation(tx.QueryRow(ctx, "SELECT doc FROM invitations WHERE email_key = $1 AND in_flight",
				flows.NormalizeEmail(inv.Request.Email)))
			if err == nil {
				verdict = flows.ErrInFlight
				return nil
			}
			if !errors.Is(err, flows.ErrNotFound) {
				return err
			}
			var taken bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM invitations WHERE id = $1)", inv.ID).Scan(&taken); err != nil {
				return err
			}
			if taken {
				return fmt.Errorf("an invitation with ID %s exists", inv.ID)
			}
			verdict = errRetry
			return nil
		})
		switch {
		case err != nil:
			return nil, fmt.Errorf("store: create invitation %s: %w", inv.ID, err)
		case verdict == errRetry:
			continue
		case verdict != nil:
			return existing, verdict
		}
		return inv.Clone(), nil
	}
	return nil, fmt.Errorf("store: create invitation %s: conflicting writes did not settle", inv.ID)
}

// errRetry says the row an insert collided with was gone when read.
var errRetry = errors.New("retry")

// Invitation implements flows.Store.
func (db *DB) Invitation(ctx context.Context, id string) (*flows.Invitation, error) {
	var inv *flows.Invitation
	err := db.read(ctx, func(c *pgxpool.Conn) (err error) {
		inv, err = scanInvitation(c.QueryRow(ctx, "SELECT doc FROM invitations WHERE id = $1", id))
		return err
	})
	return inv, err
}

// UpdateInvitation implements flows.Store.
func (db *DB) UpdateInvitation(ctx context.Context, id string, fn func(*flows.Invitation) error) (*flows.Invitation, error) {
	var inv *flows.Invitation
	err := db.write(ctx, func(tx pgx.Tx) error {
		var err error
		inv, err = scanInvitation(tx.QueryRow(ctx, "SELECT doc FROM invitations WHERE id = $1 FOR UPDATE", id))
		if err != nil {
			return err
		}
		known := len(inv.History)
		if err := fn(inv); err != nil {
			return err
		}
		_, err = putInvitation(ctx, tx, inv, false, known)
		if c, ok := uniqueViolation(err); ok {
			switch c {
			case constraintInFlight:
				return fmt.Errorf("store: update invitation %s: %w", id, flows.ErrInFlight)
			case constraintOrigin:
				return fmt.Errorf("store: update invitation %s: %w", id, flows.ErrDuplicate)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return inv, nil
}

// Invitations implements flows.Store: each field of f is a condition on a
// column; Limit takes the newest, listed oldest first like the rest.
func (db *DB) Invitations(ctx context.Context, f flows.InvitationFilter) ([]*flows.Invitation, error) {
	var where []string
	var args []any
	cond := func(sql string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(sql, len(args)))
	}
	if f.OriginKind != "" {
		cond("origin_kind = $%d", string(f.OriginKind))
	}
	if f.OriginKey != "" {
		cond("origin_key = $%d", f.OriginKey)
	}
	if f.Inviter != "" {
		cond("inviter = $%d", f.Inviter)
	}
	if len(f.Emails) > 0 {
		keys := make([]string, len(f.Emails))
		for i, e := range f.Emails {
			keys[i] = flows.NormalizeEmail(e)
		}
		cond("email_key = ANY($%d)", keys)
	}
	if len(f.States) > 0 {
		states := make([]string, len(f.States))
		for i, st := range f.States {
			states[i] = string(st)
		}
		cond("state = ANY($%d)", states)
	}
	if f.Unfinished {
		where = append(where, "in_flight")
	}
	if f.Tracked {
		where = append(where, "tracked")
	}
	if f.SponsorDue {
		where = append(where, "(doc->>'sponsorDue') = 'true'") // the partial index invitations_sponsor_due
	}
	filter := ""
	if len(where) > 0 {
		filter = " WHERE " + strings.Join(where, " AND ")
	}
	sql := "SELECT doc FROM invitations" + filter + " ORDER BY created_ns, id"
	if f.Limit > 0 {
		args = append(args, f.Limit)
		sql = fmt.Sprintf(`SELECT doc FROM (SELECT doc, created_ns, id FROM invitations%s
			ORDER BY created_ns DESC, id DESC LIMIT $%d) AS newest ORDER BY created_ns, id`, filter, len(args))
	}
	var invs []*flows.Invitation
	err := db.read(ctx, func(c *pgxpool.Conn) error {
		rows, err := c.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		invs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*flows.Invitation, error) { return scanInvitation(row) })
		return err
	})
	return invs, err
}

// SaveGuest implements flows.Store.
func (db *DB) SaveGuest(ctx context.Context, g flows.Guest) error {
	doc, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return db.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO guests (object_id, doc) VALUES ($1, $2)
			ON CONFLICT (object_id) DO UPDATE SET doc = EXCLUDED.doc`, g.ObjectID, doc)
		return err
	})
}

// Guest implements flows.Store.
func (db *DB) Guest(ctx context.Context, objectID string) (*flows.Guest, error) {
	var doc []byte
	err := db.read(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, "SELECT doc FROM guests WHERE object_id = $1", objectID).Scan(&doc)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, flows.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	var g flows.Guest
	if err := json.Unmarshal(doc, &g); err != nil {
		return nil, fmt.Errorf("decode guest %s: %w", objectID, err)
	}
	return &g, nil
}

// AuditLog implements flows.Store.
func (db *DB) AuditLog(ctx context.Context, since time.Time) ([]flows.Event, error) {
	var evs []flows.Event
	err := db.read(ctx, func(c *pgxpool.Conn) error {
		rows, err := c.Query(ctx, "SELECT doc FROM audit WHERE at_ns >= $1 ORDER BY seq", ns(since))
		if err != nil {
			return err
		}
		evs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (flows.Event, error) {
			var doc []byte
			var ev flows.Event
			if err := row.Scan(&doc); err != nil {
				return ev, err
			}
			return ev, json.Unmarshal(doc, &ev)
		})
		return err
	})
	return evs, err
}

// Stats counts the records, for metrics and doctor.
type Stats struct{ Invitations, Guests, AuditEntries int }

// Stats returns the record counts.
func (db *DB) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := db.read(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, `SELECT (SELECT count(*) FROM invitations),
			(SELECT count(*) FROM guests), (SELECT count(*) FROM audit)`).Scan(&s.Invitations, &s.Guests, &s.AuditEntries)
	})
	return s, err
}

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invitebot/invitebot/flows"
)

// AcquireLease implements flows.Leaser with one upsert on the database's
// clock: it takes a free or expired lease (epoch + 1 for a new holder) or
// renews the holder's own (epoch kept), and changes nothing otherwise.
// It is a transaction (tx), so that a renewal that finds its connection
// dead is made on another one.
func (db *DB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (flows.Lease, error) {
	var l, cur flows.Lease
	var taken bool
	err := db.tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		l, cur = flows.Lease{Name: name}, flows.Lease{Name: name}
		err := tx.QueryRow(ctx, `INSERT INTO leases AS l (name, holder, epoch, expires)
		VALUES ($1, $2, 1, now() + $3 * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE
			SET holder = EXCLUDED.holder, expires = EXCLUDED.expires,
				epoch = l.epoch + CASE WHEN l.holder = EXCLUDED.holder THEN 0 ELSE 1 END
			WHERE l.expires <= now() OR l.holder = EXCLUDED.holder
		RETURNING holder, epoch, expires`, name, holder, ttl.Microseconds()).Scan(&l.Holder, &l.Epoch, &l.Expires)
		if taken = err == nil; !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		return tx.QueryRow(ctx, "SELECT holder, epoch, expires FROM leases WHERE name = $1", name).Scan(&cur.Holder, &cur.Epoch, &cur.Expires)
	})
	switch {
	case err != nil:
		return flows.Lease{}, fmt.Errorf("acquire lease %q: %w", name, err)
	case !taken:
		return flows.Lease{}, &flows.LeaseHeldError{Current: cur}
	}
	return l, nil
}

// ReleaseLease implements flows.Leaser. The released lease has no holder,
// so whoever takes it next (even the same replica) gets a new epoch.
func (db *DB) ReleaseLease(ctx context.Context, l flows.Lease) error {
	err := db.tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE leases SET holder = '', expires = now()
			WHERE name = $1 AND holder = $2 AND epoch = $3`, l.Name, l.Holder, l.Epoch)
		return err
	})
	if err != nil {
		return fmt.Errorf("release lease %q: %w", l.Name, err)
	}
	return nil
}

// Lease returns the lease name as it stands (zero if never taken) and
// whether a holder has it now, on the database's clock; for doctor and
// `store copy`.
func (db *DB) Lease(ctx context.Context, name string) (l flows.Lease, held bool, err error) {
	l.Name = name
	err = db.read(ctx, func(c *pgxpool.Conn) error {
		return c.QueryRow(ctx, "SELECT holder, epoch, expires, holder <> '' AND expires > now() FROM leases WHERE name = $1", name).
			Scan(&l.Holder, &l.Epoch, &l.Expires, &held)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return l, false, nil
	}
	return l, held, err
}

var _ flows.LeaseSweeper = (*DB)(nil)

// DeleteStaleLeases implements flows.LeaseSweeper with one DELETE on the
// database's clock, as AcquireLease: a released lease's expires is the
// time of its release (ReleaseLease), so one condition on expires covers
// released and expired leases. It reads the leases table rather than a
// range of its primary key (a text range's order depends on the
// database's collation); swept each tracking cycle, the table holds no
// more than the replicas and bulk files of about the last LeaseSweepAge.
// Rows another transaction holds (a lease being taken) are left for the
// next call.
func (db *DB) DeleteStaleLeases(ctx context.Context, prefix string, age time.Duration, limit int) (int, error) {
	if prefix == "" {
		return 0, errors.New("delete stale leases: empty prefix")
	}
	var n int
	err := db.tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM leases WHERE name IN (
			SELECT name FROM leases
			WHERE starts_with(name, $1) AND name <> $2 AND expires < now() - $3 * interval '1 microsecond'
			ORDER BY expires LIMIT $4 FOR UPDATE SKIP LOCKED)`,
			prefix, flows.LeaseBackground, age.Microseconds(), max(limit, 0))
		n = int(tag.RowsAffected())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("delete stale leases %q: %w", prefix, err)
	}
	return n, nil
}

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invitebot/invitebot/flows"
)

// AcquireLease implements flows.Leaser with one upsert on the database's
// clock: it takes a free or expired lease (epoch + 1 for a new holder) or
// renews the holder's own (epoch kept), and changes nothing otherwise.
func (db *DB) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (flows.Lease, error) {
	l := flows.Lease{Name: name}
	err := db.pool.QueryRow(ctx, `INSERT INTO leases AS l (name, holder, epoch, expires)
		VALUES ($1, $2, 1, now() + $3 * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE
			SET holder = EXCLUDED.holder, expires = EXCLUDED.expires,
				epoch = l.epoch + CASE WHEN l.holder = EXCLUDED.holder THEN 0 ELSE 1 END
			WHERE l.expires <= now() OR l.holder = EXCLUDED.holder
		RETURNING holder, epoch, expires`, name, holder, ttl.Microseconds()).Scan(&l.Holder, &l.Epoch, &l.Expires)
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return flows.Lease{}, fmt.Errorf("acquire lease %q: %w", name, err)
	}
	cur := flows.Lease{Name: name}
	err = db.pool.QueryRow(ctx, "SELECT holder, epoch, expires FROM leases WHERE name = $1", name).Scan(&cur.Holder, &cur.Epoch, &cur.Expires)
	if err != nil {
		return flows.Lease{}, fmt.Errorf("acquire lease %q: %w", name, err)
	}
	return flows.Lease{}, &flows.LeaseHeldError{Current: cur}
}

// ReleaseLease implements flows.Leaser. The released lease has no holder,
// so whoever takes it next (even the same replica) gets a new epoch.
func (db *DB) ReleaseLease(ctx context.Context, l flows.Lease) error {
	_, err := db.pool.Exec(ctx, `UPDATE leases SET holder = '', expires = now()
		WHERE name = $1 AND holder = $2 AND epoch = $3`, l.Name, l.Holder, l.Epoch)
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
	err = db.pool.QueryRow(ctx, "SELECT holder, epoch, expires, holder <> '' AND expires > now() FROM leases WHERE name = $1", name).
		Scan(&l.Holder, &l.Epoch, &l.Expires, &held)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, false, nil
	}
	return l, held, err
}

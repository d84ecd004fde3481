package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invitebot/invitebot/flows"
)

var _ flows.InviteWindow = (*DB)(nil)

// TakeInviteSlot implements flows.InviteWindow on the database's clock. It
// locks the window's one row, so replicas take slots one after the other:
// an open throttling window, or limit slots already taken within per, make
// it record nothing and say how long until the next slot frees.
func (db *DB) TakeInviteSlot(ctx context.Context, limit int, per time.Duration) (wait time.Duration, err error) {
	err = db.tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		var throttled int64 // microseconds
		// clock_timestamp, not now(): the lock may have been waited for.
		if err := tx.QueryRow(ctx, `SELECT `+micros("throttled_until - clock_timestamp()")+`
			FROM invite_window WHERE id = 1 FOR UPDATE`).Scan(&throttled); err != nil {
			return err
		}
		if throttled > 0 {
			wait = time.Duration(throttled) * time.Microsecond
			return nil
		}
		if _, err := tx.Exec(ctx, "DELETE FROM invite_slots WHERE at <= clock_timestamp() - $1 * interval '1 microsecond'", per.Microseconds()); err != nil {
			return err
		}
		// The slot that frees the next one up is the (taken-limit+1)th
		// oldest; until it leaves the window there is no room.
		var frees int64 // microseconds
		err := tx.QueryRow(ctx, `SELECT `+micros("at + $2 * interval '1 microsecond' - clock_timestamp()")+`
			FROM invite_slots ORDER BY at DESC OFFSET $1 - 1 LIMIT 1`, limit, per.Microseconds()).Scan(&frees)
		switch {
		case err == nil:
			wait = max(time.Duration(frees)*time.Microsecond, time.Millisecond)
			return nil
		case err != pgx.ErrNoRows:
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO invite_slots (at) VALUES (clock_timestamp())")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("take an invitation slot: %w", err)
	}
	return wait, nil
}

// micros is SQL for the interval expression iv in whole microseconds, at
// least 0.
func micros(iv string) string {
	return "greatest(floor(extract(epoch FROM " + iv + ") * 1000000), 0)::bigint"
}

// ThrottleInvites implements flows.InviteWindow: every replica's next
// TakeInviteSlot waits until d from now, unless a later end is recorded.
func (db *DB) ThrottleInvites(ctx context.Context, d time.Duration) error {
	err := db.tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE invite_window
			SET throttled_until = greatest(throttled_until, clock_timestamp() + $1 * interval '1 microsecond') WHERE id = 1`, d.Microseconds())
		return err
	})
	if err != nil {
		return fmt.Errorf("record invitation throttling: %w", err)
	}
	return nil
}

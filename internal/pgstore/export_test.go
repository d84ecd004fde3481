package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// OpenNoIdlePing is Open with pgxpool's ping of idle connections off, so
// that a test's dead connections are all found by statements.
func OpenNoIdlePing(ctx context.Context, dbURL string) (*DB, error) {
	return Open(ctx, dbURL, Options{noIdlePing: true})
}

// ErrSignInLockLost is errSignInLockLost.
var ErrSignInLockLost = errSignInLockLost

// Fill opens the pool's connections up to n, all at once, and leaves
// them idle.
func (db *DB) Fill(ctx context.Context, n int) error {
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range n {
		c, err := db.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	return nil
}

// PoolStat is the pool's statistics.
func (db *DB) PoolStat() *pgxpool.Stat { return db.pool.Stat() }

package pgstore

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// When the database drops every connection (a failover, a restart, a
// proxy's restart), the pool still holds them: pgxpool pings only a
// connection idle for over a second before handing it out, so the next
// statements find theirs dead. This file is the one place that decides
// what is tried again, on another connection, so that such a drop costs
// no error:
//
//   - a read (a query without effects: read) is run again whenever its
//     connection turned out dead;
//   - a transaction (tx) is run again only when its BEGIN failed on a dead
//     connection. BEGIN has no effect, and the caller's function has not
//     run: nothing can have been written. Once BEGIN succeeded, a failure
//     is the caller's: the function is never run twice, and a COMMIT that
//     was sent is never repeated, since it may have been applied.
//     Statements that write go through tx even when they are one
//     statement, for this reason: sent alone, a statement that fails on a
//     dead TCP connection cannot tell whether the server got it.
//
// Each failed try closes its connection (the pool then discards it), so
// within the pool's size plus one tries a new connection is used. A
// connection is dead when it is closed after the error while ctx is not
// done (pgx closes a connection on a cancelled context too).

// dead says whether err, from a statement on c, left c closed while ctx
// still allows another try: the session is gone.
func dead(ctx context.Context, c *pgxpool.Conn, err error) bool {
	return err != nil && ctx.Err() == nil && c.Conn().IsClosed()
}

// tries is how many times an operation is tried on dead connections.
func (db *DB) tries() int { return int(db.pool.Config().MaxConns) + 1 }

// read runs fn, which must have no effect on the database, on a pooled
// connection, again on another one while the connection is dead.
func (db *DB) read(ctx context.Context, fn func(*pgxpool.Conn) error) error {
	for try := 1; ; try++ {
		c, err := db.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		err = fn(c)
		again := dead(ctx, c, err) && try < db.tries()
		c.Release()
		if !again {
			return err
		}
	}
}

// tx runs fn in a transaction with opts, committed when fn returns nil
// and rolled back otherwise (as pgx.BeginTxFunc). It is tried again on
// another connection only when BEGIN failed on a dead one.
func (db *DB) tx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	for try := 1; ; try++ {
		c, err := db.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		b := &beginner{c: c}
		err = pgx.BeginTxFunc(ctx, b, opts, fn)
		again := !b.began && dead(ctx, c, err) && try < db.tries()
		c.Release()
		if !again {
			return err
		}
	}
}

// beginner begins a transaction on c and records whether BEGIN succeeded.
type beginner struct {
	c     *pgxpool.Conn
	began bool
}

func (b *beginner) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	t, err := b.c.BeginTx(ctx, opts)
	b.began = err == nil
	return t, err
}

package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/invitebot/invitebot/flows"
)

var _ flows.SignInStore = (*DB)(nil)

// querier is a pool or one of its connections.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SignInRecord implements flows.SignInStore.
func (db *DB) SignInRecord(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := db.read(ctx, func(c *pgxpool.Conn) (err error) {
		v, err = signInRecord(ctx, c, key)
		return err
	})
	return v, err
}

func signInRecord(ctx context.Context, q querier, key string) ([]byte, error) {
	var v []byte
	err := q.QueryRow(ctx, "SELECT value FROM signin WHERE key = $1", key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, flows.ErrNotFound
	}
	return v, err
}

// PutSignInRecord implements flows.SignInStore.
func (db *DB) PutSignInRecord(ctx context.Context, key string, value []byte, expires time.Time) error {
	return db.tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error { return putSignInRecord(ctx, tx, key, value, expires) })
}

func putSignInRecord(ctx context.Context, q querier, key string, value []byte, expires time.Time) error {
	_, err := q.Exec(ctx, `INSERT INTO signin (key, value, expires) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires = EXCLUDED.expires`, key, value, nullTime(expires))
	return err
}

// nullTime is t, or NULL for the zero time.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// TakeSignInRecord implements flows.SignInStore: one DELETE … RETURNING,
// so of two replicas taking the same key one gets it.
func (db *DB) TakeSignInRecord(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := db.tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "DELETE FROM signin WHERE key = $1 RETURNING value", key).Scan(&v)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, flows.ErrNotFound
	}
	return v, err
}

// DeleteSignInRecord implements flows.SignInStore.
func (db *DB) DeleteSignInRecord(ctx context.Context, key string) error {
	return db.tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "DELETE FROM signin WHERE key = $1", key)
		return err
	})
}

// DeleteExpiredSignInRecords implements flows.SignInStore, through the
// index on expires. Rows another transaction holds are left for the next
// call.
func (db *DB) DeleteExpiredSignInRecords(ctx context.Context, before time.Time, limit int) (int, error) {
	var n int
	err := db.tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM signin WHERE key IN (
			SELECT key FROM signin WHERE expires < $1 ORDER BY expires LIMIT $2 FOR UPDATE SKIP LOCKED)`, before, max(limit, 0))
		n = int(tag.RowsAffected())
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// signInLockClass is the first key of the sign-in records' advisory locks
// ("sign" in ASCII); the second is the hash of the record's key. (The
// two-key advisory locks are apart from the one-key ones, such as the
// migration lock.) Two keys whose hashes collide share a lock: they wait
// for each other, nothing worse.
const signInLockClass int32 = 0x7369676e

// LockSignInRecord implements flows.SignInStore with a session advisory
// lock (pg_advisory_lock) on a connection of its own, which the lock's
// reads and writes use too: every replica's holders exclude each other,
// and a replica that dies releases its locks with its session. Within a
// replica the holders of a key first queue in-process, so that waiters do
// not each take a connection from the pool.
//
// Taking the lock is tried again on another connection when its
// connection turned out dead (a dead session holds no lock). Once taken,
// the lock lives and dies with its session: if that connection breaks
// (a failover), the lock is gone, and every later Record, Put and Delete
// fails with errSignInLockLost rather than being made on another
// connection without the lock.
func (db *DB) LockSignInRecord(ctx context.Context, key string) (flows.SignInLock, error) {
	local, err := db.signInLocks.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	for try := 1; ; try++ {
		conn, err := db.pool.Acquire(ctx)
		if err != nil {
			local()
			return nil, err
		}
		_, err = conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", signInLockClass, key)
		if err == nil {
			return &signInLock{conn: conn, key: key, local: local}, nil
		}
		again := dead(ctx, conn, err) && try < db.tries()
		// Whether the lock was granted before the error is not known:
		// end the session, which releases it.
		_ = conn.Conn().Close(context.WithoutCancel(ctx))
		conn.Release()
		if !again {
			local()
			return nil, err
		}
	}
}

// errSignInLockLost says a sign-in lock's connection broke, which ended
// its session and so released the lock.
var errSignInLockLost = errors.New("the sign-in record's lock was lost with its database connection")

// lost is err, said to have lost the lock if the lock's connection is
// closed after it.
func (l *signInLock) lost(err error) error {
	if err != nil && l.conn.Conn().IsClosed() {
		return fmt.Errorf("%w: %w", errSignInLockLost, err)
	}
	return err
}

// signInLock is a held sign-in record lock.
type signInLock struct {
	conn  *pgxpool.Conn
	key   string
	local func()
	once  sync.Once
}

func (l *signInLock) Record(ctx context.Context) ([]byte, error) {
	v, err := signInRecord(ctx, l.conn, l.key)
	return v, l.lost(err)
}

func (l *signInLock) Put(ctx context.Context, value []byte, expires time.Time) error {
	return l.lost(putSignInRecord(ctx, l.conn, l.key, value, expires))
}

func (l *signInLock) Delete(ctx context.Context) error {
	_, err := l.conn.Exec(ctx, "DELETE FROM signin WHERE key = $1", l.key)
	return l.lost(err)
}

// Unlock releases the advisory lock and returns the connection to the
// pool; if the release fails, it closes the connection instead (ending
// the session releases the lock).
func (l *signInLock) Unlock() {
	l.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var released bool
		if err := l.conn.QueryRow(ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", signInLockClass, l.key).Scan(&released); err != nil || !released {
			_ = l.conn.Conn().Close(ctx)
		}
		l.conn.Release()
		l.local()
	})
}

package pgstore

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/invitebot/invitebot/flows"
)

var _ flows.SignInStore = (*DB)(nil)

// SignInRecord implements flows.SignInStore.
func (db *DB) SignInRecord(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := db.pool.QueryRow(ctx, "SELECT value FROM signin WHERE key = $1", key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, flows.ErrNotFound
	}
	return v, err
}

// PutSignInRecord implements flows.SignInStore.
func (db *DB) PutSignInRecord(ctx context.Context, key string, value []byte) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO signin (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, key, value)
	return err
}

// TakeSignInRecord implements flows.SignInStore: one DELETE … RETURNING,
// so of two replicas taking the same key one gets it.
func (db *DB) TakeSignInRecord(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := db.pool.QueryRow(ctx, "DELETE FROM signin WHERE key = $1 RETURNING value", key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, flows.ErrNotFound
	}
	return v, err
}

// DeleteSignInRecord implements flows.SignInStore.
func (db *DB) DeleteSignInRecord(ctx context.Context, key string) error {
	_, err := db.pool.Exec(ctx, "DELETE FROM signin WHERE key = $1", key)
	return err
}

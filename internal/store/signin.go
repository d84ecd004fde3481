package store

import (
	"bytes"
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/invitebot/invitebot/flows"
)

// bucketSignIn holds the sign-in adapter's records (sealed by it).
var bucketSignIn = []byte("signin")

var _ flows.SignInStore = (*DB)(nil)

func signInBucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	if b := tx.Bucket(bucketSignIn); b != nil {
		return b, nil
	}
	if !tx.Writable() {
		return nil, nil
	}
	return tx.CreateBucket(bucketSignIn)
}

// SignInRecord implements flows.SignInStore.
func (db *DB) SignInRecord(_ context.Context, key string) ([]byte, error) {
	var out []byte
	err := db.db.View(func(tx *bolt.Tx) error {
		b, _ := signInBucket(tx)
		if b == nil {
			return flows.ErrNotFound
		}
		v := b.Get([]byte(key))
		if v == nil {
			return flows.ErrNotFound
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

// PutSignInRecord implements flows.SignInStore.
func (db *DB) PutSignInRecord(_ context.Context, key string, value []byte) error {
	return db.db.Update(func(tx *bolt.Tx) error {
		b, err := signInBucket(tx)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), bytes.Clone(value))
	})
}

// TakeSignInRecord implements flows.SignInStore.
func (db *DB) TakeSignInRecord(_ context.Context, key string) ([]byte, error) {
	var out []byte
	err := db.db.Update(func(tx *bolt.Tx) error {
		b, err := signInBucket(tx)
		if err != nil {
			return err
		}
		v := b.Get([]byte(key))
		if v == nil {
			return flows.ErrNotFound
		}
		out = bytes.Clone(v)
		return b.Delete([]byte(key))
	})
	return out, err
}

// DeleteSignInRecord implements flows.SignInStore.
func (db *DB) DeleteSignInRecord(_ context.Context, key string) error {
	return db.db.Update(func(tx *bolt.Tx) error {
		b, err := signInBucket(tx)
		if err != nil {
			return err
		}
		return b.Delete([]byte(key))
	})
}

package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/invitebot/invitebot/flows"
)

// The sign-in adapter's records (sealed by it), and the expiries of those
// that have one: signin_expiry orders them by expiry, so that the expired
// ones are found without reading any value; signin_expires finds a
// record's entry there when the record is replaced or deleted.
var (
	bucketSignIn        = []byte("signin")         // key → value
	bucketSignInExpiry  = []byte("signin_expiry")  // big-endian Unix ns ‖ key → nothing
	bucketSignInExpires = []byte("signin_expires") // key → big-endian Unix ns
)

var _ flows.SignInStore = (*DB)(nil)

// signInBuckets returns the sign-in buckets, created in a writable
// transaction; in a read-only one they are nil until the first write.
func signInBuckets(tx *bolt.Tx) (recs, byExpiry, expires *bolt.Bucket, err error) {
	names := [][]byte{bucketSignIn, bucketSignInExpiry, bucketSignInExpires}
	bs := make([]*bolt.Bucket, len(names))
	for i, name := range names {
		if bs[i] = tx.Bucket(name); bs[i] == nil && tx.Writable() {
			if bs[i], err = tx.CreateBucket(name); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	return bs[0], bs[1], bs[2], nil
}

// signInBucket returns the records' bucket (see signInBuckets).
func signInBucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	b, _, _, err := signInBuckets(tx)
	return b, err
}

// expiryKey is key's entry in signin_expiry.
func expiryKey(at []byte, key string) []byte {
	return append(bytes.Clone(at), key...)
}

// setSignInExpiry replaces key's expiry; a zero expires removes it.
func setSignInExpiry(tx *bolt.Tx, key string, expires time.Time) error {
	_, byExpiry, exp, err := signInBuckets(tx)
	if err != nil {
		return err
	}
	if old := exp.Get([]byte(key)); old != nil {
		if err := byExpiry.Delete(expiryKey(old, key)); err != nil {
			return err
		}
		if err := exp.Delete([]byte(key)); err != nil {
			return err
		}
	}
	if expires.IsZero() {
		return nil
	}
	at := make([]byte, 8)
	binary.BigEndian.PutUint64(at, uint64(max(expires.UnixNano(), 0)))
	if err := exp.Put([]byte(key), at); err != nil {
		return err
	}
	return byExpiry.Put(expiryKey(at, key), nil)
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
func (db *DB) PutSignInRecord(_ context.Context, key string, value []byte, expires time.Time) error {
	return db.db.Update(func(tx *bolt.Tx) error {
		b, err := signInBucket(tx)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(key), bytes.Clone(value)); err != nil {
			return err
		}
		return setSignInExpiry(tx, key, expires)
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
		if err := b.Delete([]byte(key)); err != nil {
			return err
		}
		return setSignInExpiry(tx, key, time.Time{})
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
		if err := b.Delete([]byte(key)); err != nil {
			return err
		}
		return setSignInExpiry(tx, key, time.Time{})
	})
}

// DeleteExpiredSignInRecords implements flows.SignInStore: it walks
// signin_expiry from the earliest expiry, in one transaction.
func (db *DB) DeleteExpiredSignInRecords(_ context.Context, before time.Time, limit int) (int, error) {
	n := 0
	err := db.db.Update(func(tx *bolt.Tx) error {
		recs, byExpiry, exp, err := signInBuckets(tx)
		if err != nil {
			return err
		}
		end := uint64(max(before.UnixNano(), 0))
		var due [][]byte
		c := byExpiry.Cursor()
		for k, _ := c.First(); k != nil && len(due) < limit; k, _ = c.Next() {
			if len(k) < 8 || binary.BigEndian.Uint64(k[:8]) >= end {
				break
			}
			due = append(due, bytes.Clone(k))
		}
		for _, k := range due {
			key := k[8:]
			if err := byExpiry.Delete(k); err != nil {
				return err
			}
			if !bytes.Equal(exp.Get(key), k[:8]) {
				continue // not the record's expiry (cannot happen; nothing to delete)
			}
			if err := exp.Delete(key); err != nil {
				return err
			}
			if err := recs.Delete(key); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// getOrNil is b.Get(k), or nil if there is no bucket b.
func getOrNil(b *bolt.Bucket, k []byte) []byte {
	if b == nil {
		return nil
	}
	return b.Get(k)
}

// LockSignInRecord implements flows.SignInStore: one process holds the
// file, so an in-process lock is exact.
func (db *DB) LockSignInRecord(ctx context.Context, key string) (flows.SignInLock, error) {
	return flows.LockSignInRecordLocally(ctx, db, &db.signInLocks, key)
}

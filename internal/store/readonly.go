package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// openReadOnly opens an existing file for reading only: no bucket is
// created and the schema version is checked, not written.
func openReadOnly(path string, opts Options) (*DB, error) {
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, ReadOnly: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = bdb.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			if v := meta.Get(keySchema); v != nil {
				return checkSchema(v)
			}
		}
		return nil
	})
	if err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &DB{db: bdb, path: path}, nil
}

// WriteTo writes a consistent copy of the whole file to w, from one read
// transaction: writers go on meanwhile, and the copy is the file as of the
// transaction's start. It implements io.WriterTo.
func (db *DB) WriteTo(w io.Writer) (int64, error) {
	var n int64
	err := db.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// WriteSizedTo is WriteTo preceded by the copy's size (8 bytes,
// big-endian), both of the same read transaction: a reader of a stream
// (invitebot backup, over a socket) knows where the copy ends and whether
// it got all of it. The count returned leaves out the 8 bytes.
func (db *DB) WriteSizedTo(w io.Writer) (int64, error) {
	var n int64
	err := db.db.View(func(tx *bolt.Tx) error {
		var hdr [8]byte
		binary.BigEndian.PutUint64(hdr[:], uint64(tx.Size()))
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/invitebot/invitebot/flows"
)

// Ensure that a version 2 file whose address index let two invitations for
// one address be in flight opens with the newer one holding the address
// and both listed as unfinished.
func TestMigrateVersion2TwoInFlight(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v2.db")
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	err = db.db.Update(func(tx *bolt.Tx) error {
		for i, id := range []string{"older", "newer"} {
			inv := &flows.Invitation{ID: id, Origin: flows.Origin{Kind: flows.OriginDialog, Key: "V" + id}, State: flows.StateInviting,
				Request: flows.Request{Email: "bob@fabrikam.com"}, CreatedAt: at.Add(time.Duration(i) * time.Minute)}
			raw, err := encode(inv)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketInvitations).Put([]byte(id), raw); err != nil {
				return err
			}
		}
		// Version 2's address index named the last written one.
		b, err := tx.CreateBucket(bucketByEmail)
		if err != nil {
			return err
		}
		if err := b.Put([]byte("bob@fabrikam.com"), []byte("older")); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, itob(2))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := t.Context()
	third := &flows.Invitation{ID: "third", Origin: flows.Origin{Kind: flows.OriginDialog, Key: "Vthird"}, State: flows.StateRequested,
		Request: flows.Request{Email: "bob@fabrikam.com"}, CreatedAt: at.Add(time.Hour)}
	if got, err := db.CreateInvitation(ctx, third); !errors.Is(err, flows.ErrInFlight) || got == nil || got.ID != "newer" {
		t.Errorf("third: %v, %v; want ErrInFlight with newer", got, err)
	}
	if got, err := db.Invitations(ctx, flows.InvitationFilter{Unfinished: true}); err != nil || len(got) != 2 {
		t.Errorf("unfinished = %d, %v; want both", len(got), err)
	}
	err = db.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketByEmail) != nil {
			t.Error("version 2's address index is still there")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Ensure a version 3 file's connect links and sign-ins in progress, stored
// without an expiry, get one that covers their 10 minutes, and its
// connections none.
func TestMigrateVersion3SignInExpiry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v3.db")
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.db.Update(func(tx *bolt.Tx) error {
		// Version 3 had the records' bucket only.
		for _, name := range [][]byte{bucketSignInExpiry, bucketSignInExpires} {
			if tx.Bucket(name) != nil {
				if err := tx.DeleteBucket(name); err != nil {
					return err
				}
			}
		}
		b, err := tx.CreateBucketIfNotExists(bucketSignIn)
		if err != nil {
			return err
		}
		for _, k := range []string{"conn/U1", "link/a", "flow/b"} {
			if err := b.Put([]byte(k), []byte("v")); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, itob(3))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	opened := time.Now()
	db, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := t.Context()
	if n, err := db.DeleteExpiredSignInRecords(ctx, opened.Add(legacySignInTTL-time.Second), 10); n != 0 || err != nil {
		t.Errorf("expired within 10 minutes of the migration = %d, %v; want 0", n, err)
	}
	if n, err := db.DeleteExpiredSignInRecords(ctx, time.Now().Add(legacySignInTTL+time.Second), 10); n != 2 || err != nil {
		t.Errorf("expired after 10 minutes = %d, %v; want 2 (the link and the sign-in)", n, err)
	}
	for k, want := range map[string]bool{"conn/U1": true, "link/a": false, "flow/b": false} {
		if _, err := db.SignInRecord(ctx, k); (err == nil) != want {
			t.Errorf("%s kept = %v, want %v", k, err == nil, want)
		}
	}
	if err := db.Check(); err != nil {
		t.Error(err)
	}
}

package store_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

func TestSignInStore(t *testing.T) {
	flowstest.TestSignInStore(t, func(t *testing.T) flows.SignInStore {
		db := mustOpen(t, filepath.Join(t.TempDir(), "s.db"))
		t.Cleanup(func() {
			if err := db.Check(); err != nil {
				t.Error(err)
			}
			_ = db.Close()
		})
		return db
	})
	// A record and an expiry survive reopening the file.
	path := filepath.Join(t.TempDir(), "r.db")
	db := mustOpen(t, path)
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	if err := db.PutSignInRecord(t.Context(), "conn/U1", []byte("sealed"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutSignInRecord(t.Context(), "link/x", []byte("link"), at); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	db = mustOpen(t, path)
	defer db.Close()
	if got, err := db.SignInRecord(t.Context(), "conn/U1"); err != nil || string(got) != "sealed" {
		t.Errorf("after reopen = %q, %v", got, err)
	}
	if n, err := db.DeleteExpiredSignInRecords(t.Context(), at.Add(time.Second), 10); n != 1 || err != nil {
		t.Errorf("expired after reopen = %d, %v; want 1", n, err)
	}
}

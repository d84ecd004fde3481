package store_test

import (
	"path/filepath"
	"testing"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

func TestSignInStore(t *testing.T) {
	flowstest.TestSignInStore(t, func(t *testing.T) flows.SignInStore {
		db := mustOpen(t, filepath.Join(t.TempDir(), "s.db"))
		t.Cleanup(func() { _ = db.Close() })
		return db
	})
	// A record survives reopening the file.
	path := filepath.Join(t.TempDir(), "r.db")
	db := mustOpen(t, path)
	if err := db.PutSignInRecord(t.Context(), "conn/U1", []byte("sealed")); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	db = mustOpen(t, path)
	defer db.Close()
	if got, err := db.SignInRecord(t.Context(), "conn/U1"); err != nil || string(got) != "sealed" {
		t.Errorf("after reopen = %q, %v", got, err)
	}
}

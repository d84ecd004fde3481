package store_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/store"
)

// Ensure a read-only open creates nothing, writes nothing, and is refused
// while a writer holds the file.
func TestReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "invitebot.db")
	if _, err := store.Open(path, store.Options{ReadOnly: true}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read-only open of a missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read-only open created %s: %v", path, err)
	}

	db := mustOpen(t, path)
	if _, err := store.Open(path, store.Options{ReadOnly: true, LockTimeout: 50 * time.Millisecond}); !errors.Is(err, store.ErrLocked) {
		t.Errorf("read-only open while a writer holds it: %v, want ErrLocked", err)
	}
	if _, err := db.CreateInvitation(t.Context(), newInvitation("a", "V1", "bob@fabrikam.com", flows.StateRequested)); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	ro, err := store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if inv, err := ro.Invitation(t.Context(), "a"); err != nil || inv.Request.Email != "bob@fabrikam.com" {
		t.Errorf("read: %v, %v", inv, err)
	}
	if err := ro.Check(); err != nil {
		t.Errorf("check: %v", err)
	}
	if _, err := ro.CreateInvitation(t.Context(), newInvitation("b", "V2", "x@y.com", flows.StateRequested)); err == nil {
		t.Error("a write through a read-only store succeeded")
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the read-only open changed the file")
	}
}

// Ensure WriteTo copies a store that opens with the same records, while
// the original stays open for writing.
func TestWriteTo(t *testing.T) {
	dir := t.TempDir()
	db := mustOpen(t, filepath.Join(dir, "invitebot.db"))
	defer db.Close()
	ctx := t.Context()
	for _, id := range []string{"a", "b"} {
		if _, err := db.CreateInvitation(ctx, newInvitation(id, "V"+id, id+"@fabrikam.com", flows.StateRequested)); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	n, err := db.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) || n == 0 {
		t.Fatalf("WriteTo = %d, %v (wrote %d bytes)", n, err, buf.Len())
	}
	// Written after the copy: not in it.
	if _, err := db.CreateInvitation(ctx, newInvitation("c", "Vc", "c@fabrikam.com", flows.StateRequested)); err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "copy.db")
	if err := os.WriteFile(copyPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cp, err := store.Open(copyPath, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Close()
	if err := cp.Check(); err != nil {
		t.Errorf("copy check: %v", err)
	}
	all, err := cp.Invitations(ctx, flows.InvitationFilter{})
	if err != nil || len(all) != 2 || all[0].ID != "a" || all[1].ID != "b" {
		t.Errorf("copy holds %d invitations (%v), want a and b", len(all), err)
	}
}

// Ensure Import writes all invitations, their indexes and audit events in
// one go, and none when one is refused.
func TestImport(t *testing.T) {
	db := mustOpen(t, filepath.Join(t.TempDir(), "invitebot.db"))
	defer db.Close()
	ctx := t.Context()
	invs := []*flows.Invitation{
		newInvitation("a", "Va", "a@fabrikam.com", flows.StateInviting),
		newInvitation("b", "Vb", "b@fabrikam.com", flows.StateInviting),
	}
	if err := db.ImportInvitations(ctx, invs); err != nil {
		t.Fatal(err)
	}
	// The address index is written: a second invitation of a pending
	// address is refused.
	if _, err := db.CreateInvitation(ctx, newInvitation("x", "Vx", "A@fabrikam.com", flows.StateRequested)); !errors.Is(err, flows.ErrInFlight) {
		t.Errorf("create after import: %v, want ErrInFlight", err)
	}
	if evs, err := db.AuditLog(ctx, time.Time{}); err != nil || len(evs) != 2 {
		t.Errorf("audit log: %d events, %v; want 2", len(evs), err)
	}
	// One known ID refuses the whole import.
	err := db.ImportInvitations(ctx, []*flows.Invitation{newInvitation("c", "Vc", "c@fabrikam.com", flows.StateInviting), invs[0]})
	if err == nil {
		t.Fatal("import of a known ID succeeded")
	}
	if _, err := db.Invitation(ctx, "c"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("after a refused import, c: %v, want ErrNotFound", err)
	}
}

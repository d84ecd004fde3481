package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/store"
)

func mustOpen(t *testing.T, path string) *store.DB {
	t.Helper()
	db, err := store.Open(path, store.Options{NoSync: true, LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func newInvitation(id, view, email string, state flows.State) *flows.Invitation {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	return &flows.Invitation{ID: id, ViewID: view, State: state, CreatedAt: now, UpdatedAt: now,
		Request: flows.Request{Email: email},
		History: []flows.Event{{At: now, InvitationID: id, Actor: "U1", Action: "requested"}}}
}

func TestStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "invitebot.db")
	db := mustOpen(t, path)
	ctx := t.Context()

	if _, err := db.CreateInvitation(ctx, newInvitation("a", "V1", "Bob@Fabrikam.com", flows.StateRequested)); err != nil {
		t.Fatal(err)
	}
	if got, err := db.CreateInvitation(ctx, newInvitation("b", "V1", "x@y.com", flows.StateRequested)); !errors.Is(err, flows.ErrDuplicate) || got.ID != "a" {
		t.Errorf("same view: %v, %v; want ErrDuplicate with a", got, err)
	}
	if got, err := db.CreateInvitation(ctx, newInvitation("c", "V2", "bob@fabrikam.com", flows.StateRequested)); !errors.Is(err, flows.ErrInFlight) || got.ID != "a" {
		t.Errorf("same address in flight: %v, %v; want ErrInFlight with a", got, err)
	}
	// A failed update writes nothing.
	boom := errors.New("boom")
	if _, err := db.UpdateInvitation(ctx, "a", func(inv *flows.Invitation) error { inv.State = flows.StateFailed; return boom }); !errors.Is(err, boom) {
		t.Fatalf("update error = %v", err)
	}
	if inv, _ := db.Invitation(ctx, "a"); inv.State != flows.StateRequested {
		t.Errorf("state after failed update = %s", inv.State)
	}
	_, err := db.UpdateInvitation(ctx, "a", func(inv *flows.Invitation) error {
		inv.State = flows.StateNotified
		inv.History = append(inv.History, flows.Event{At: inv.CreatedAt.Add(time.Minute), InvitationID: "a", Action: "done"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Finished: the address can be invited again.
	if _, err := db.CreateInvitation(ctx, newInvitation("d", "V3", "bob@fabrikam.com", flows.StateRequested)); err != nil {
		t.Errorf("address after a finished invitation: %v", err)
	}
	if _, err := db.Invitation(ctx, "nope"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if err := db.SaveGuest(ctx, flows.Guest{ObjectID: "o1", Email: "bob@fabrikam.com", Groups: []string{"g"}}); err != nil {
		t.Fatal(err)
	}
	if g, err := db.Guest(ctx, "o1"); err != nil || g.Email != "bob@fabrikam.com" {
		t.Errorf("guest = %+v, %v", g, err)
	}
	if _, err := db.Guest(ctx, "o2"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("unknown guest: %v", err)
	}

	// A second process (or Open) fails fast with a clear error.
	if _, err := store.Open(path, store.Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, store.ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
	if err := db.Check(); err != nil {
		t.Error(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Everything survives a reopen; the audit log keeps its order.
	db = mustOpen(t, path)
	defer db.Close()
	invs, err := db.Invitations(ctx, func(inv *flows.Invitation) bool { return !inv.State.Terminal() })
	if err != nil || len(invs) != 1 || invs[0].ID != "d" {
		t.Errorf("unfinished after reopen = %v, %v", invs, err)
	}
	audit, err := db.AuditLog(ctx, time.Time{})
	if err != nil || len(audit) != 3 || audit[1].Action != "done" {
		t.Errorf("audit = %+v, %v; want requested, done, requested", audit, err)
	}
	if late, _ := db.AuditLog(ctx, audit[0].At.Add(time.Second)); len(late) != 1 {
		t.Errorf("audit since = %d entries, want 1", len(late))
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
}

// Ensure concurrent updates do not lose writes.
func TestConcurrentUpdates(t *testing.T) {
	db := mustOpen(t, filepath.Join(t.TempDir(), "db"))
	defer db.Close()
	if _, err := db.CreateInvitation(t.Context(), newInvitation("a", "", "a@b.com", flows.StateRequested)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	for range 20 {
		go func() {
			_, err := db.UpdateInvitation(t.Context(), "a", func(inv *flows.Invitation) error { inv.InviteAttempt++; return nil })
			done <- err
		}()
	}
	for range 20 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if inv, _ := db.Invitation(t.Context(), "a"); inv.InviteAttempt != 20 {
		t.Errorf("attempts = %d, want 20", inv.InviteAttempt)
	}
}

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
	return &flows.Invitation{ID: id, Origin: flows.Origin{Kind: flows.OriginDialog, Key: view}, State: state, CreatedAt: now, UpdatedAt: now,
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
	invs, err := db.Invitations(ctx, flows.InvitationFilter{Unfinished: true})
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

// Ensure a file written by schema version 1 (invitebot before origins:
// testdata/v1.db, made by the Service of that version with a dialog
// invitation, a dialog waiting for a pick, two bulk rows and a conversion)
// is read with each invitation's origin, and that its origin keys still
// deduplicate.
func TestOpenVersion1(t *testing.T) {
	raw, err := os.ReadFile("testdata/v1.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "v1.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	db := mustOpen(t, path)
	defer db.Close()
	ctx := t.Context()
	invs, err := db.Invitations(ctx, flows.InvitationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]flows.Origin{
		"bob@fabrikam.com":        {Kind: flows.OriginDialog, Key: "V0DIALOG1"},
		"erin@fabrikam.com":       {Kind: flows.OriginDialog, Key: "V0DIALOG2"},
		"carol@fabrikam.com":      {Kind: flows.OriginBulk, Key: "fe99a65c1ca13bad10fa7cc1:UALICE:1", Name: "guests.csv line 2"},
		"frank@northwind.example": {Kind: flows.OriginBulk, Key: "36c78c9089e46c1be4f79f21:UALICE:1", Name: "guests.csv line 3"},
		"dan@partner.example":     {Kind: flows.OriginConvert},
	}
	if len(invs) != len(want) {
		t.Fatalf("%d invitations, want %d", len(invs), len(want))
	}
	for _, inv := range invs {
		if got := inv.Origin; got != want[inv.Request.Email] {
			t.Errorf("%s: origin %+v, want %+v", inv.Request.Email, got, want[inv.Request.Email])
		}
		if inv.State == "" || len(inv.History) == 0 {
			t.Errorf("%s: state %q, %d events", inv.Request.Email, inv.State, len(inv.History))
		}
	}
	// The origin keys carried over: a re-delivered submission is a duplicate.
	dup := newInvitation("new", "V0DIALOG1", "someone@else.example", flows.StateRequested)
	if got, err := db.CreateInvitation(ctx, dup); !errors.Is(err, flows.ErrDuplicate) || got.Request.Email != "bob@fabrikam.com" {
		t.Errorf("dialog V0DIALOG1 again: %v, %v; want ErrDuplicate with bob's", got, err)
	}
	row := newInvitation("new", "", "x@y.example", flows.StateRequested)
	row.Origin = want["carol@fabrikam.com"]
	if got, err := db.CreateInvitation(ctx, row); !errors.Is(err, flows.ErrDuplicate) || got.Request.Email != "carol@fabrikam.com" {
		t.Errorf("bulk row again: %v, %v; want ErrDuplicate with carol's", got, err)
	}
	if got, err := db.Invitations(ctx, flows.InvitationFilter{OriginKind: flows.OriginBulk}); err != nil || len(got) != 2 {
		t.Errorf("bulk invitations = %d, %v; want 2", len(got), err)
	}
	// The indexes were built from the records.
	if got, err := db.Invitations(ctx, flows.InvitationFilter{Unfinished: true}); err != nil || len(got) != 1 || got[0].Request.Email != "erin@fabrikam.com" {
		t.Errorf("unfinished = %v, %v; want erin's", got, err)
	}
	if got, err := db.Invitations(ctx, flows.InvitationFilter{Inviter: "UALICE"}); err != nil || len(got) != 4 {
		t.Errorf("UALICE's = %d, %v; want 4", len(got), err)
	}
	if got, err := db.Invitations(ctx, flows.InvitationFilter{Emails: []string{"Frank@Northwind.example"}}); err != nil || len(got) != 1 || got[0].Origin.Kind != flows.OriginBulk {
		t.Errorf("frank's = %v, %v; want the bulk row", got, err)
	}
	// The dialog waiting for a pick still holds its address.
	if _, err := db.CreateInvitation(ctx, newInvitation("new", "V9", "Erin@Fabrikam.com", flows.StateRequested)); !errors.Is(err, flows.ErrInFlight) {
		t.Errorf("erin again: %v, want ErrInFlight", err)
	}
	if err := db.Check(); err != nil {
		t.Error(err)
	}
}

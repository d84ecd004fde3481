package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
	"github.com/invitebot/invitebot/internal/store"
)

// fillStore writes invitations (one finished, one in flight per address),
// guests and their audit events through flows' Store interface.
func fillStore(t *testing.T, s flows.Store) {
	t.Helper()
	ctx := t.Context()
	at := time.Date(2026, 3, 1, 9, 0, 0, 123456789, time.UTC)
	for i := range 5 {
		id := fmt.Sprintf("inv-%d", i)
		created := at.Add(time.Duration(i) * time.Minute)
		inv := &flows.Invitation{ID: id, State: flows.StateRequested, CreatedAt: created, UpdatedAt: created,
			Inviter: flows.Inviter{TeamID: "T1", UserID: "U1"},
			Request: flows.Request{Email: fmt.Sprintf("guest%d@fabrikam.com", i%3), Groups: []string{"g1"}},
			History: []flows.Event{{At: created, InvitationID: id, Actor: "U1", Action: "requested"}}}
		if _, err := s.CreateInvitation(ctx, inv); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpdateInvitation(ctx, id, func(inv *flows.Invitation) error {
			inv.State, inv.ObjectID = flows.StateNotified, "obj-"+id
			inv.History = append(inv.History, flows.Event{At: created.Add(time.Second), InvitationID: id, ObjectID: inv.ObjectID, Actor: flows.ActorBot, Action: "notified"})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.SaveGuest(ctx, flows.Guest{ObjectID: "obj-" + id, Email: inv.Request.Email, InvitationID: id, CreatedAt: created}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.(flows.SignInStore).PutSignInRecord(ctx, "conn/U1", []byte("sealed"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	// A connect link: its expiry is copied with it.
	if err := s.(flows.SignInStore).PutSignInRecord(ctx, "link/L1", []byte("link"), linkExpires); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateInvitation(ctx, &flows.Invitation{ID: "inv-open", State: flows.StateInviting, CreatedAt: at.Add(time.Hour),
		Request: flows.Request{Email: "guest0@fabrikam.com"}}); err != nil {
		t.Fatal(err)
	}
}

// linkExpires is when fillStore's connect link expires (whole
// microseconds, as PostgreSQL keeps them).
var linkExpires = time.Date(2026, 3, 1, 9, 10, 0, 0, time.UTC)

func storeCopy(t *testing.T, from, to string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"store", "copy", from, to}, func(string) string { return "" }, &out, &errOut)
	return out.String() + errOut.String(), err
}

func export(t *testing.T, db string) *flows.Snapshot {
	t.Helper()
	s, err := openStore(t.Context(), db, storeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.(snapshotter).Export(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// bbolt → PostgreSQL → bbolt keeps every record, the audit log's order and
// the uniqueness of the address in flight.
func TestStoreCopyRoundTrip(t *testing.T) {
	dir := t.TempDir()
	bolt, back, pg := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db"), pgtest.URL(t)
	src, err := store.Open(bolt, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, src)
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	want := export(t, bolt)
	if len(want.Invitations) != 6 || len(want.Guests) != 5 || len(want.Audit) != 10 || string(want.SignIn["conn/U1"]) != "sealed" ||
		len(want.SignInExpires) != 1 || !want.SignInExpires["link/L1"].Equal(linkExpires) {
		t.Fatalf("source holds %d, %d, %d", len(want.Invitations), len(want.Guests), len(want.Audit))
	}

	out, err := storeCopy(t, bolt, pg)
	if err != nil || !strings.Contains(out, "copied 6 invitations, 5 guests, 10 audit events, 2 sign-in records") {
		t.Fatalf("bbolt → PostgreSQL: %v\n%s", err, out)
	}
	if got := export(t, pg); !reflect.DeepEqual(got, want) {
		t.Errorf("PostgreSQL holds\n%+v\nwant\n%+v", got, want)
	}
	out, err = storeCopy(t, pg, back)
	if err != nil || !strings.Contains(out, "copied 6 invitations, 5 guests, 10 audit events, 2 sign-in records") {
		t.Fatalf("PostgreSQL → bbolt: %v\n%s", err, out)
	}
	if got := export(t, back); !reflect.DeepEqual(got, want) {
		t.Errorf("bbolt copy holds\n%+v\nwant\n%+v", got, want)
	}
	// The copies enforce what the original did: one invitation in flight
	// per address.
	for _, db := range []string{pg, back} {
		s, err := openStore(t.Context(), db, storeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.CreateInvitation(t.Context(), &flows.Invitation{ID: "again", Request: flows.Request{Email: "GUEST0@fabrikam.com"}, State: flows.StateRequested})
		if err == nil || got == nil || got.ID != "inv-open" {
			t.Errorf("%s: a second invitation in flight for guest0: %v, %v", db, got, err)
		}
		_ = s.Close()
	}
}

func TestStoreCopyRefuses(t *testing.T) {
	dir := t.TempDir()
	bolt, pg := filepath.Join(dir, "a.db"), pgtest.URL(t)
	src, err := store.Open(bolt, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, src)
	refused := func(name, from, to, want string) {
		t.Helper()
		if out, err := storeCopy(t, from, to); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q\n%s", name, err, want, out)
		}
	}
	// src is open: a running invitebot holds the file.
	refused("BoltInUse", bolt, pg, "in use by a running invitebot")
	if err := src.Close(); err != nil {
		t.Fatal(err)
	}
	refused("MissingFile", filepath.Join(dir, "nope.db"), pg, "no store at")
	refused("Same", bolt, bolt, "the same store")
	if _, err := storeCopy(t, bolt, pg); err != nil {
		t.Fatal(err)
	}
	refused("NonEmptyPostgres", bolt, pg, "holds records")
	refused("NonEmptyBolt", pg, bolt, "holds records")
	// A replica runs on PostgreSQL: it holds the background lease.
	db, err := pgstore.Open(t.Context(), pg, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.AcquireLease(context.Background(), flows.LeaseBackground, "replica-1", time.Hour); err != nil {
		t.Fatal(err)
	}
	refused("PostgresInUse", pg, filepath.Join(dir, "c.db"), "replica-1 holds its lease")
	refused("PostgresTargetInUse", bolt, pg, "replica-1 holds its lease")
	// Nothing was written to the refused copy's target.
	if snap := export(t, filepath.Join(dir, "c.db")); len(snap.Invitations)+len(snap.Guests)+len(snap.Audit)+len(snap.SignIn) != 0 {
		t.Errorf("refused copy wrote %+v", snap)
	}
}

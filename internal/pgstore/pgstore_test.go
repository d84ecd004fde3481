package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// open returns n stores (replicas) on one fresh database.
func open(t *testing.T, n int) []*pgstore.DB {
	t.Helper()
	url := pgtest.URL(t)
	dbs := make([]*pgstore.DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = pgstore.Open(t.Context(), url, pgstore.Options{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { _ = dbs[i].Close() })
	}
	return dbs
}

var seq int

func newInv(email, view string, state flows.State) *flows.Invitation {
	seq++
	at := time.Date(2026, 1, 1, 0, 0, seq, 0, time.UTC)
	id := fmt.Sprintf("inv-%03d", seq)
	var origin flows.Origin
	if view != "" {
		origin = flows.Origin{Kind: flows.OriginDialog, Key: view}
	}
	return &flows.Invitation{
		ID: id, Origin: origin, State: state,
		Request:   flows.Request{Email: email},
		Inviter:   flows.Inviter{UserID: "U1"},
		History:   []flows.Event{{At: at, InvitationID: id, Actor: "U1", Action: "requested"}},
		CreatedAt: at, UpdatedAt: at,
	}
}

// Replicas that start together all migrate safely to the same version.
func TestOpenConcurrentlyMigratesOnce(t *testing.T) {
	for _, db := range open(t, 4) {
		if got, want := db.Version(), pgstore.SchemaVersion(); got != want || want < 1 {
			t.Errorf("Version = %d, want %d", got, want)
		}
	}
}

func TestCreateInvitationUniqueness(t *testing.T) {
	ctx := t.Context()
	db := open(t, 1)[0]
	a := newInv("Bob@Example.com", "V1", flows.StateRequested)
	if _, err := db.CreateInvitation(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := db.CreateInvitation(ctx, newInv("other@example.com", "V1", flows.StateRequested))
	if !errors.Is(err, flows.ErrDuplicate) || got == nil || got.ID != a.ID {
		t.Fatalf("same view: %v, %v; want %s and ErrDuplicate", got, err, a.ID)
	}
	got, err = db.CreateInvitation(ctx, newInv(" bob@example.COM", "V2", flows.StateRequested))
	if !errors.Is(err, flows.ErrInFlight) || got == nil || got.ID != a.ID {
		t.Fatalf("same address in flight: %v, %v; want %s and ErrInFlight", got, err, a.ID)
	}
	if _, err := db.UpdateInvitation(ctx, a.ID, func(inv *flows.Invitation) error { inv.State = flows.StateFailed; return nil }); err != nil {
		t.Fatal(err)
	}
	b := newInv("bob@example.com", "V3", flows.StateRequested)
	if _, err := db.CreateInvitation(ctx, b); err != nil {
		t.Fatalf("address free again after failure: %v", err)
	}
	// Updating the older, finished invitation must not hide the newer
	// one in flight (bbolt's address index did).
	if _, err := db.UpdateInvitation(ctx, a.ID, func(inv *flows.Invitation) error { inv.Failure = &flows.Failure{}; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := db.CreateInvitation(ctx, newInv("bob@example.com", "V4", flows.StateRequested)); !errors.Is(err, flows.ErrInFlight) || got.ID != b.ID {
		t.Fatalf("third invitation: %v, %v; want %s and ErrInFlight", got, err, b.ID)
	}
	// Reviving the finished one while the newer is in flight is refused.
	_, err = db.UpdateInvitation(ctx, a.ID, func(inv *flows.Invitation) error { inv.State = flows.StateInviting; return nil })
	if !errors.Is(err, flows.ErrInFlight) {
		t.Fatalf("revive: %v, want ErrInFlight", err)
	}
	if got, _ := db.Invitation(ctx, a.ID); got.State != flows.StateFailed {
		t.Errorf("revive wrote state %s", got.State)
	}
	all, err := db.Invitations(ctx, flows.InvitationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].ID != a.ID || all[1].ID != b.ID {
		t.Errorf("Invitations = %v, want [%s %s]", ids(all), a.ID, b.ID)
	}
}

func ids(invs []*flows.Invitation) []string {
	var out []string
	for _, inv := range invs {
		out = append(out, inv.ID)
	}
	return out
}

// Submissions of one view or one address racing on two replicas: one
// wins, the others are told which.
func TestCreateRaceAcrossReplicas(t *testing.T) {
	ctx := t.Context()
	dbs := open(t, 2)
	const n = 8
	results := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		inv := newInv("race@example.com", fmt.Sprintf("V%d", i%2), flows.StateRequested)
		wg.Go(func() {
			got, err := dbs[i%2].CreateInvitation(ctx, inv)
			if err == nil && got.ID != inv.ID {
				err = fmt.Errorf("created returned %s", got.ID)
			}
			results[i] = err
		})
	}
	wg.Wait()
	won := 0
	for _, err := range results {
		switch {
		case err == nil:
			won++
		case errors.Is(err, flows.ErrDuplicate), errors.Is(err, flows.ErrInFlight):
		default:
			t.Error(err)
		}
	}
	if won != 1 {
		t.Errorf("%d creations won, want 1", won)
	}
}

func TestUpdateInvitationAtomic(t *testing.T) {
	ctx := t.Context()
	dbs := open(t, 2)
	inv := newInv("atomic@example.com", "", flows.StateInviting)
	if _, err := dbs[0].CreateInvitation(ctx, inv); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := dbs[i%2].UpdateInvitation(ctx, inv.ID, func(inv *flows.Invitation) error {
				inv.InviteAttempt++
				inv.History = append(inv.History, flows.Event{At: inv.CreatedAt.Add(time.Duration(inv.InviteAttempt) * time.Second), InvitationID: inv.ID, Action: "attempt"})
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	boom := errors.New("boom")
	if _, err := dbs[0].UpdateInvitation(ctx, inv.ID, func(inv *flows.Invitation) error {
		inv.InviteAttempt = 1000
		inv.History = append(inv.History, flows.Event{Action: "lost"})
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}
	got, err := dbs[1].Invitation(ctx, inv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.InviteAttempt != n || len(got.History) != n+1 {
		t.Errorf("InviteAttempt = %d, history %d; want %d, %d", got.InviteAttempt, len(got.History), n, n+1)
	}
	log, err := dbs[0].AuditLog(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != n+1 {
		t.Fatalf("audit has %d events, want %d", len(log), n+1)
	}
	for i, ev := range log {
		if i > 0 && ev.At.Before(log[i-1].At) {
			t.Errorf("audit out of order at %d: %v after %v", i, ev.At, log[i-1].At)
		}
	}
	since, err := dbs[0].AuditLog(ctx, log[n].At)
	if err != nil || len(since) != 1 || since[0].At != log[n].At {
		t.Errorf("AuditLog(since last) = %v, %v", since, err)
	}
	if _, err := dbs[0].UpdateInvitation(ctx, "nope", func(*flows.Invitation) error { return nil }); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("update of a missing invitation: %v", err)
	}
}

func TestGuests(t *testing.T) {
	ctx := t.Context()
	db := open(t, 1)[0]
	if _, err := db.Guest(ctx, "G1"); !errors.Is(err, flows.ErrNotFound) {
		t.Fatalf("missing guest: %v", err)
	}
	for _, name := range []string{"First", "Second"} {
		if err := db.SaveGuest(ctx, flows.Guest{ObjectID: "G1", DisplayName: name, Groups: []string{"g"}}); err != nil {
			t.Fatal(err)
		}
	}
	g, err := db.Guest(ctx, "G1")
	if err != nil || g.DisplayName != "Second" || len(g.Groups) != 1 {
		t.Fatalf("Guest = %+v, %v", g, err)
	}
}

func TestLeaseAndFencing(t *testing.T) {
	ctx := t.Context()
	dbs := open(t, 2)
	r1, r2 := dbs[0], dbs[1]
	l1, err := r1.AcquireLease(ctx, flows.LeaseBackground, "r1", time.Hour)
	if err != nil || l1.Epoch != 1 || l1.Holder != "r1" {
		t.Fatalf("first acquire: %+v, %v", l1, err)
	}
	var held *flows.LeaseHeldError
	if _, err := r2.AcquireLease(ctx, flows.LeaseBackground, "r2", time.Hour); !errors.As(err, &held) || !errors.Is(err, flows.ErrLeaseHeld) || held.Current.Holder != "r1" {
		t.Fatalf("acquire of a held lease: %v", err)
	}
	renewed, err := r1.AcquireLease(ctx, flows.LeaseBackground, "r1", time.Millisecond)
	if err != nil || renewed.Epoch != 1 || !renewed.Expires.Before(l1.Expires) {
		t.Fatalf("renewal: %+v, %v", renewed, err)
	}
	inv := newInv("fence@example.com", "", flows.StateInviting)
	if _, err := r1.CreateInvitation(flows.WithFence(ctx, renewed), inv); err != nil {
		// The renewal may have lapsed already (1ms): then it is fenced.
		if !errors.Is(err, flows.ErrFenced) {
			t.Fatal(err)
		}
		if _, err := r1.CreateInvitation(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	// r1's lease lapses; r2 takes it with the next epoch.
	var l2 flows.Lease
	for deadline := time.Now().Add(10 * time.Second); ; {
		l2, err = r2.AcquireLease(ctx, flows.LeaseBackground, "r2", time.Hour)
		if err == nil {
			break
		}
		if !errors.Is(err, flows.ErrLeaseHeld) || time.Now().After(deadline) {
			t.Fatalf("takeover: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if l2.Epoch != 2 {
		t.Errorf("takeover epoch = %d, want 2", l2.Epoch)
	}
	stale := flows.WithFence(ctx, renewed)
	if _, err := r1.UpdateInvitation(stale, inv.ID, func(inv *flows.Invitation) error { inv.State = flows.StateFailed; return nil }); !errors.Is(err, flows.ErrFenced) {
		t.Fatalf("stale leader's update: %v, want ErrFenced", err)
	}
	if err := r1.SaveGuest(stale, flows.Guest{ObjectID: "G"}); !errors.Is(err, flows.ErrFenced) {
		t.Fatalf("stale leader's SaveGuest: %v, want ErrFenced", err)
	}
	if got, _ := r1.Invitation(ctx, inv.ID); got.State != flows.StateInviting {
		t.Errorf("fenced update wrote state %s", got.State)
	}
	if _, err := r2.UpdateInvitation(flows.WithFence(ctx, l2), inv.ID, func(inv *flows.Invitation) error { inv.State = flows.StateFailed; return nil }); err != nil {
		t.Fatalf("leader's fenced update: %v", err)
	}
	// Releasing a lease no longer held is a no-op; releasing the current
	// one lets another replica take it at once, with a new epoch.
	if err := r1.ReleaseLease(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	if err := r2.ReleaseLease(ctx, l2); err != nil {
		t.Fatal(err)
	}
	l3, err := r1.AcquireLease(ctx, flows.LeaseBackground, "r1", time.Hour)
	if err != nil || l3.Epoch != 3 {
		t.Fatalf("after release: %+v, %v", l3, err)
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	if _, err := pgstore.Open(context.Background(), "postgres://u:s3cret@%zz/x", pgstore.Options{}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open with a bad URL: %v", err)
	}
}

// With Options.Password every new connection asks for the password (an
// Entra token on Azure); when it cannot be had, nothing connects.
func TestPasswordFunc(t *testing.T) {
	url := pgtest.URL(t)
	var calls atomic.Int32
	db, err := pgstore.Open(t.Context(), url, pgstore.Options{Password: func(context.Context) (string, error) {
		calls.Add(1)
		return "token", nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if calls.Load() == 0 {
		t.Error("Password was not asked for")
	}
	_, err = pgstore.Open(t.Context(), url, pgstore.Options{Password: func(context.Context) (string, error) {
		return "", errors.New("no token for you")
	}})
	if err == nil || !strings.Contains(err.Error(), "no token for you") {
		t.Errorf("Open without a password: %v", err)
	}
}

package flowstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
)

// leaseTTL is the suite's short lease, which it waits to lapse.
const leaseTTL = 300 * time.Millisecond

func acquire(t *testing.T, l flows.Leaser, name, holder string, ttl time.Duration) flows.Lease {
	t.Helper()
	got, err := l.AcquireLease(t.Context(), name, holder, ttl)
	if err != nil {
		t.Fatalf("AcquireLease(%s, %s): %v", name, holder, err)
	}
	if got.Name != name || got.Holder != holder {
		t.Fatalf("AcquireLease(%s, %s) = %+v", name, holder, got)
	}
	return got
}

// refused checks that holder cannot take the lease and that the error
// names who holds it.
func refused(t *testing.T, l flows.Leaser, name, holder string, by flows.Lease) {
	t.Helper()
	_, err := l.AcquireLease(t.Context(), name, holder, leaseTTL)
	var held *flows.LeaseHeldError
	if !errors.Is(err, flows.ErrLeaseHeld) || !errors.As(err, &held) {
		t.Fatalf("AcquireLease(%s, %s) = %v, want a *LeaseHeldError", name, holder, err)
	}
	if held.Current.Holder != by.Holder || held.Current.Epoch != by.Epoch || held.Current.Name != name {
		t.Errorf("held by %+v, want %s at epoch %d", held.Current, by.Holder, by.Epoch)
	}
}

func testLease(t *testing.T, l flows.Leaser) {
	ctx := t.Context()
	a := acquire(t, l, flows.LeaseBackground, "r1", time.Minute)
	if a.Epoch != 1 || a.Expires.IsZero() {
		t.Errorf("first lease = %+v, want epoch 1 and an expiry", a)
	}
	refused(t, l, flows.LeaseBackground, "r2", a)
	// Another name is another lease.
	if o := acquire(t, l, "other", "r2", time.Minute); o.Epoch != 1 {
		t.Errorf("other lease = %+v, want epoch 1", o)
	}
	// A renewal keeps the epoch and moves the expiry; here, closer.
	start := time.Now()
	r := acquire(t, l, flows.LeaseBackground, "r1", leaseTTL)
	if r.Epoch != a.Epoch || !r.Expires.Before(a.Expires) {
		t.Errorf("renewal = %+v after %+v, want the same epoch and the new expiry", r, a)
	}
	refused(t, l, flows.LeaseBackground, "r2", a)
	// Once it lapses another holder takes it, with the next epoch.
	var b flows.Lease
	for {
		var err error
		b, err = l.AcquireLease(ctx, flows.LeaseBackground, "r2", time.Minute)
		if err == nil {
			break
		}
		if !errors.Is(err, flows.ErrLeaseHeld) {
			t.Fatal(err)
		}
		if time.Since(start) > 30*time.Second { // generous: a loaded machine
			t.Fatalf("the lease did not lapse within 30s")
		}
		if flows.SleepContext(ctx, leaseTTL/10) != nil {
			t.Fatal(ctx.Err())
		}
	}
	if took := time.Since(start); took < leaseTTL {
		t.Errorf("r2 took the lease after %s, before its %s lapsed", took, leaseTTL)
	}
	if b.Holder != "r2" || b.Epoch != a.Epoch+1 {
		t.Errorf("taken over = %+v, want r2 at epoch %d", b, a.Epoch+1)
	}
	refused(t, l, flows.LeaseBackground, "r1", b)
	// Releasing a lease no longer held changes nothing.
	if err := l.ReleaseLease(ctx, a); err != nil {
		t.Errorf("releasing a lost lease: %v", err)
	}
	refused(t, l, flows.LeaseBackground, "r1", b)
	// Releasing the held one hands it over at once.
	if err := l.ReleaseLease(ctx, b); err != nil {
		t.Fatal(err)
	}
	if c := acquire(t, l, flows.LeaseBackground, "r1", time.Minute); c.Epoch != b.Epoch+1 {
		t.Errorf("after the release = %+v, want epoch %d", c, b.Epoch+1)
	}
}

// Ensure that a write fenced with a lease that changed hands writes
// nothing and returns ErrFenced, and that the holder's fenced writes and
// unfenced writes go through.
func testFence(t *testing.T, s flows.Store) {
	l := s.(flows.Leaser)
	ctx := t.Context()
	a := acquire(t, l, flows.LeaseBackground, "r1", time.Minute)
	r1 := flows.WithFence(ctx, a)
	if _, err := s.CreateInvitation(r1, invitation("a", dialog("V1"), "bob@fabrikam.com", flows.StateRequested, 0)); err != nil {
		t.Fatalf("the holder's fenced create: %v", err)
	}
	if _, err := s.UpdateInvitation(r1, "a", func(inv *flows.Invitation) error { inv.InviteAttempt = 1; return nil }); err != nil {
		t.Fatalf("the holder's fenced update: %v", err)
	}
	if err := s.SaveGuest(r1, flows.Guest{ObjectID: "o1", Email: "bob@fabrikam.com"}); err != nil {
		t.Fatalf("the holder's fenced guest: %v", err)
	}
	if err := l.ReleaseLease(ctx, a); err != nil {
		t.Fatal(err)
	}
	b := acquire(t, l, flows.LeaseBackground, "r2", time.Minute)
	// r1 lost the lease: its fenced writes fail and write nothing.
	if _, err := s.UpdateInvitation(r1, "a", func(inv *flows.Invitation) error {
		inv.InviteAttempt = 2
		inv.History = append(inv.History, flows.Event{At: base, InvitationID: "a", Action: "stale"})
		return nil
	}); !errors.Is(err, flows.ErrFenced) {
		t.Errorf("stale fenced update: %v, want ErrFenced", err)
	}
	if _, err := s.CreateInvitation(r1, invitation("b", dialog("V2"), "carol@fabrikam.com", flows.StateRequested, 1)); !errors.Is(err, flows.ErrFenced) {
		t.Errorf("stale fenced create: %v, want ErrFenced", err)
	}
	if err := s.SaveGuest(r1, flows.Guest{ObjectID: "o2", Email: "carol@fabrikam.com"}); !errors.Is(err, flows.ErrFenced) {
		t.Errorf("stale fenced guest: %v, want ErrFenced", err)
	}
	// A lease of another name, or one never acquired, fences too.
	if _, err := s.UpdateInvitation(flows.WithFence(ctx, flows.Lease{Name: "nothing", Holder: "r1", Epoch: 1}), "a",
		func(*flows.Invitation) error { return nil }); !errors.Is(err, flows.ErrFenced) {
		t.Errorf("fenced by an unknown lease: %v, want ErrFenced", err)
	}
	if inv, _ := s.Invitation(ctx, "a"); inv.InviteAttempt != 1 {
		t.Errorf("attempt = %d after a stale write, want 1", inv.InviteAttempt)
	}
	if _, err := s.Invitation(ctx, "b"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("a stale create wrote: %v", err)
	}
	if _, err := s.Guest(ctx, "o2"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("a stale guest save wrote: %v", err)
	}
	if audit, _ := s.AuditLog(ctx, time.Time{}); len(audit) != 1 {
		t.Errorf("audit = %d events, want 1 (nothing from stale writes)", len(audit))
	}
	// The new holder writes, fenced; so does a write without a fence (a
	// submission on any replica).
	if _, err := s.UpdateInvitation(flows.WithFence(ctx, b), "a", func(inv *flows.Invitation) error { inv.InviteAttempt = 3; return nil }); err != nil {
		t.Errorf("the new holder's fenced update: %v", err)
	}
	if _, err := s.CreateInvitation(context.WithoutCancel(ctx), invitation("b", dialog("V2"), "carol@fabrikam.com", flows.StateRequested, 1)); err != nil {
		t.Errorf("an unfenced create: %v", err)
	}
}

// Ensure DeleteStaleLeases deletes the leases under its prefix that were
// released or expired at least age ago, at most limit per call, and keeps
// a lease held and unexpired, the background lease, leases under other
// prefixes and those released more recently than age. A deleted lease is
// seen by its epoch starting again at 1; a kept one's goes on.
func testLeaseSweep(t *testing.T, l flows.Leaser, sw flows.LeaseSweeper) {
	ctx := t.Context()
	released := func(name string) flows.Lease {
		t.Helper()
		got := acquire(t, l, name, "r1", time.Minute)
		if err := l.ReleaseLease(ctx, got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	sweep := func(prefix string, age time.Duration, limit int) int {
		t.Helper()
		n, err := sw.DeleteStaleLeases(ctx, prefix, age, limit)
		if err != nil {
			t.Fatalf("DeleteStaleLeases(%q, %s, %d): %v", prefix, age, limit, err)
		}
		if n > limit {
			t.Fatalf("DeleteStaleLeases(%q, %s, %d) deleted %d, more than the limit", prefix, age, limit, n)
		}
		return n
	}
	// nextEpoch is the epoch another holder gets on taking name now.
	nextEpoch := func(name string) int64 {
		t.Helper()
		return acquire(t, l, name, "r9", time.Minute).Epoch
	}
	start := time.Now()
	released(flows.LeaseBackground)
	held := acquire(t, l, "replica/held", "r1", time.Minute)
	released("replica/gone")
	acquire(t, l, "replica/lapsed", "r1", leaseTTL) // expires, never released
	released("replicas")                            // not under "replica/"
	released("other/x")
	for _, f := range []string{"F1", "F2", "F3"} {
		released("bulk-file/" + f)
	}
	if _, err := sw.DeleteStaleLeases(ctx, "", 0, 10); err == nil {
		t.Error("DeleteStaleLeases with an empty prefix: no error")
	}
	// Released or expired less than age ago: kept.
	if n := sweep("replica/", time.Hour, 100); n != 0 {
		t.Errorf("deleted %d leases released moments ago, with an hour's age", n)
	}
	// With age 0, the released one goes at once and the lapsed one once
	// it expires; one per call (the limit).
	deleted := 0
	for deleted < 2 {
		deleted += sweep("replica/", 0, 1)
		if time.Since(start) > 30*time.Second { // generous: a loaded machine
			t.Fatalf("deleted %d of the two stale replica/ leases in 30s", deleted)
		}
		if deleted < 2 && flows.SleepContext(ctx, leaseTTL/10) != nil {
			t.Fatal(ctx.Err())
		}
	}
	if n := sweep("replica/", 0, 100); n != 0 {
		t.Errorf("deleted %d more replica/ leases; only the held one is left", n)
	}
	// The limit: three stale bulk-file leases, two then one.
	if n := sweep("bulk-file/", 0, 2); n != 2 {
		t.Errorf("bulk-file/ sweep with limit 2 deleted %d, want 2", n)
	}
	if n := sweep("bulk-file/", 0, 2); n != 1 {
		t.Errorf("second bulk-file/ sweep deleted %d, want 1", n)
	}
	// The background lease is never deleted, even under its own name.
	if n := sweep(flows.LeaseBackground, 0, 100); n != 0 {
		t.Errorf("deleted the background lease (%d)", n)
	}
	refused(t, l, "replica/held", "r9", held)
	for name, want := range map[string]int64{
		"replica/gone": 1, "replica/lapsed": 1, "bulk-file/F1": 1, "bulk-file/F2": 1, "bulk-file/F3": 1,
		flows.LeaseBackground: 2, "replicas": 2, "other/x": 2,
	} {
		if got := nextEpoch(name); got != want {
			t.Errorf("lease %s taken again at epoch %d, want %d (1: deleted, 2: kept)", name, got, want)
		}
	}
}

package flows_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
)

const day = 24 * time.Hour

func expiryEnv(t *testing.T, action flows.ExpiryAction) *env {
	t.Helper()
	e := newEnv(t)
	p := e.svc.Policy()
	p.Expiry, p.ExpiryAction = 30*day, action
	e.svc.SetPolicy(p)
	return e
}

func TestExpiryRemindsOnceThenEnds(t *testing.T) {
	e := expiryEnv(t, "")
	inv := e.pending(t, "bob@fabrikam.com")
	if inv.Expiry == nil || inv.Expiry.Period != 30*day || inv.Expiry.At.Sub(e.now()) < 29*day {
		t.Fatalf("expiry = %+v, want the policy's 30 days", inv.Expiry)
	}
	if st := e.track(t); st.ExpiryWarned != 0 || st.Expired != 0 {
		t.Fatalf("a fresh guest: %+v", st)
	}
	e.advance(24 * day)
	if st := e.track(t); st.ExpiryWarned != 1 {
		t.Fatalf("7 days before the end: %+v, want the sponsor asked", st)
	}
	e.track(t)
	if n := e.note.Count(flows.NoticeExpiring, inv.ID); n != 1 {
		t.Errorf("expiry reminders = %d, want 1", n)
	}
	e.advance(7 * day)
	if st := e.track(t); st.Expired != 1 {
		t.Fatalf("at the end: %+v, want expired", st)
	}
	got := e.load(t, inv.ID)
	if got.State != flows.StateRevoked || got.Action != nil {
		t.Errorf("after expiry: %s, action %v", got.State, got.Action)
	}
	for _, g := range []string{"g1", "g2"} {
		if slices.Contains(e.dir.GroupMembers(g), inv.ObjectID) {
			t.Errorf("still in %s after expiry", g)
		}
	}
	var expired bool
	for _, n := range e.note.Notices() {
		expired = expired || n.Kind == flows.NoticeActionDone && n.Action == flows.ActionExpire
	}
	if !expired {
		t.Error("the sponsor was not told the access expired")
	}
}

func TestExpiryExtendAndLetExpire(t *testing.T) {
	e := expiryEnv(t, flows.ExpireDisable)
	inv := e.pending(t, "bob@fabrikam.com")
	end := inv.Expiry.At
	e.advance(25 * day)
	e.track(t)
	if _, err := e.svc.Extend(t.Context(), inv.ID, flows.Inviter{UserID: "UOTHER"}); !errors.Is(err, flows.ErrNotAuthorized) {
		t.Errorf("extend by someone else: %v", err)
	}
	got, err := e.svc.Extend(t.Context(), inv.ID, inviter)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Expiry.At.Equal(end.Add(30*day)) || !got.Expiry.WarnedAt.IsZero() {
		t.Errorf("after extend: %+v, want 30 more days from the old end", got.Expiry)
	}
	if _, err := e.svc.LetExpire(t.Context(), inv.ID, inviter); err != nil {
		t.Fatal(err)
	}
	e.advance(30 * day) // within the warning window of the new end
	e.track(t)
	if n := e.note.Count(flows.NoticeExpiring, inv.ID); n != 1 {
		t.Errorf("reminders = %d, want only the first (then let expire)", n)
	}
	e.advance(10 * day)
	e.track(t)
	if e.dir.Count("DisableUser") != 1 {
		t.Error("with action disable, sign-in was not blocked")
	}
	if got := e.load(t, inv.ID); got.State != flows.StateRevoked {
		t.Errorf("state = %s, want revoked", got.State)
	}
}

func TestNoExpiryChosen(t *testing.T) {
	e := expiryEnv(t, "")
	r := request()
	r.ExpiresIn = flows.NoExpiry
	inv := e.submit(t, "V1", r)
	if inv.Expiry != nil {
		t.Errorf("expiry = %+v, want none", inv.Expiry)
	}
	r.Email, r.ExpiresIn = "carl@fabrikam.com", 6*365*day
	if _, err := e.svc.Submit(t.Context(), "V2", inviter, r); err == nil {
		t.Error("an expiry over 5 years was accepted")
	}
}

// Extend answers a reminder once: a second click does not add a second
// period; an expiry that keeps failing is given up after a few tries.
func TestExtendOncePerReminderAndExpiryGivesUp(t *testing.T) {
	e := expiryEnv(t, "")
	inv := e.pending(t, "bob@fabrikam.com")
	if _, err := e.svc.Extend(t.Context(), inv.ID, inviter); !errors.Is(err, flows.ErrNotApplicable) {
		t.Errorf("extend before any reminder: %v, want ErrNotApplicable", err)
	}
	e.advance(25 * day)
	e.track(t)
	if _, err := e.svc.Extend(t.Context(), inv.ID, inviter); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Extend(t.Context(), inv.ID, inviter); !errors.Is(err, flows.ErrNotApplicable) {
		t.Errorf("a second click: %v, want ErrNotApplicable", err)
	}
	if got := e.load(t, inv.ID); !got.Expiry.At.Equal(inv.Expiry.At.Add(30 * day)) {
		t.Errorf("end = %v, want one period later than %v", got.Expiry.At, inv.Expiry.At)
	}
	e.advance(40 * day)
	removeFails := &flows.DirectoryError{Op: "remove group member", Status: 403, Code: "Authorization_RequestDenied"}
	e.dir.RemoveGroupMemberFunc = func(context.Context, string, string) error { return removeFails }
	for range flows.MaxExpiryFailures + 2 {
		e.track(t)
	}
	got := e.load(t, inv.ID)
	if got.Expiry.Failures != flows.MaxExpiryFailures || got.State != flows.StateNotified {
		t.Errorf("after repeated failures: %d failures, state %s; want %d and the guest left to a person", got.Expiry.Failures, got.State, flows.MaxExpiryFailures)
	}
}

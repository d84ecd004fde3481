package flows_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

// pending submits a request for email and returns the notified invitation.
func (e *env) pending(t *testing.T, email string) *flows.Invitation {
	t.Helper()
	r := request()
	r.Email = email
	inv := e.submit(t, "V-"+email, r)
	if !inv.Pending() {
		t.Fatalf("invitation %s is %s (tracking %+v), want pending", email, inv.State, inv.Tracking)
	}
	return inv
}

func (e *env) track(t *testing.T) flows.TrackStats {
	t.Helper()
	st, err := e.svc.Track(t.Context())
	if err != nil {
		t.Fatalf("Track: %v", err)
	}
	e.svc.Wait()
	return st
}

func (e *env) load(t *testing.T, id string) *flows.Invitation {
	t.Helper()
	inv, err := e.store.Invitation(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestTrackAcceptanceNotifiesOnce(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	if st := e.track(t); st.Pending != 1 || st.Requests != 1 || st.Accepted != 0 {
		t.Fatalf("first cycle = %+v, want 1 pending, 1 request, nothing accepted", st)
	}
	e.dir.SetState(inv.ObjectID, flows.ExternalAccepted)
	if st := e.track(t); st.Accepted != 1 {
		t.Fatalf("cycle after acceptance = %+v, want 1 accepted", st)
	}
	got := e.load(t, inv.ID)
	if got.State != flows.StateAccepted || got.Tracking.AcceptedAt.IsZero() || len(got.Outbox) != 0 {
		t.Errorf("invitation = %s %+v outbox %v, want accepted with the notice delivered", got.State, got.Tracking, got.Outbox)
	}
	if g, _ := e.store.Guest(t.Context(), inv.ObjectID); g == nil || g.State != flows.StateAccepted {
		t.Errorf("guest = %+v, want accepted", g)
	}
	if st := e.track(t); st.Pending != 0 || st.Requests != 0 {
		t.Errorf("cycle after that = %+v, want nothing to check", st)
	}
	if n := e.note.Count(flows.NoticeAccepted, inv.ID); n != 1 {
		t.Errorf("accepted notices = %d, want 1", n)
	}
}

func TestTrackUsesChangeTime(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	changed := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	e.dir.ExternalStatesFunc = func(_ context.Context, ids []string) ([]flows.ExternalState, error) {
		return []flows.ExternalState{{UserID: ids[0], State: flows.ExternalAccepted, ChangedAt: changed}}, nil
	}
	e.track(t)
	if got := e.load(t, inv.ID); !got.Tracking.AcceptedAt.Equal(changed) {
		t.Errorf("accepted at %v, want Graph's externalUserStateChangeDateTime %v", got.Tracking.AcceptedAt, changed)
	}
}

func TestTrackBatchesTwentyPerRequest(t *testing.T) {
	e := newEnv(t)
	for i := range 45 {
		e.pending(t, fmt.Sprintf("guest%02d@fabrikam.com", i))
	}
	st := e.track(t)
	if st.Pending != 45 || st.Requests != 3 {
		t.Errorf("cycle = %+v, want 45 pending in 3 requests", st)
	}
	for _, c := range e.dir.Calls() {
		if c.Op == "ExternalStates" && len(c.Args) > flows.MaxStatesPerRequest {
			t.Errorf("a batch of %d ids", len(c.Args))
		}
	}
}

func TestTrackNullStateIsNotPending(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	e.dir.SetState(inv.ObjectID, "")
	e.track(t)
	got := e.load(t, inv.ID)
	if got.Pending() || got.State != flows.StateNotified || got.Tracking.External != flows.TrackNone {
		t.Errorf("invitation = %s %+v, want notified and no longer tracked", got.State, got.Tracking)
	}
	if n := len(e.note.Notices()); e.note.Count(flows.NoticeAccepted, "") != 0 {
		t.Errorf("null state produced an acceptance notice (%d notices)", n)
	}
}

func TestTrackDeletedGuestAfterGrace(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	if err := e.dir.DeleteUser(t.Context(), inv.ObjectID); err != nil {
		t.Fatal(err)
	}
	if st := e.track(t); st.Removed != 0 {
		t.Fatalf("first 404 counted as removed: %+v", st)
	}
	if got := e.load(t, inv.ID); got.State != flows.StateNotified || got.Tracking.MissingSince.IsZero() {
		t.Fatalf("after a first 404: %s %+v, want notified with MissingSince", got.State, got.Tracking)
	}
	e.advance(11 * time.Minute)
	if st := e.track(t); st.Removed != 1 {
		t.Fatalf("404 past the grace period: %+v, want removed", st)
	}
	e.track(t)
	if got := e.load(t, inv.ID); got.State != flows.StateRemoved {
		t.Errorf("state = %s, want removed", got.State)
	}
	if n := e.note.Count(flows.NoticeRemoved, inv.ID); n != 1 {
		t.Errorf("removed notices = %d, want 1", n)
	}
}

func TestTrackMissingThenFoundResets(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	missing := true
	e.dir.ExternalStatesFunc = func(_ context.Context, ids []string) ([]flows.ExternalState, error) {
		if missing {
			return []flows.ExternalState{{UserID: ids[0], Err: &flows.DirectoryError{Status: 404}}}, nil
		}
		return []flows.ExternalState{{UserID: ids[0], State: flows.ExternalPending}}, nil
	}
	e.track(t)
	missing = false
	e.track(t)
	e.advance(time.Hour)
	missing = true
	e.track(t)
	if got := e.load(t, inv.ID); got.State != flows.StateNotified {
		t.Errorf("a 404 after the guest was seen again counted from the first one: %s", got.State)
	}
}

func TestTrackRetriesOnlyThrottledItems(t *testing.T) {
	e := newEnv(t)
	a := e.pending(t, "a@fabrikam.com")
	b := e.pending(t, "b@fabrikam.com")
	var (
		mu    sync.Mutex
		calls [][]string
	)
	e.dir.ExternalStatesFunc = func(_ context.Context, ids []string) ([]flows.ExternalState, error) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, slices.Clone(ids))
		var out []flows.ExternalState
		for _, id := range ids {
			if id == b.ObjectID && len(calls) == 1 {
				out = append(out, flows.ExternalState{UserID: id, Err: throttled(1500 * time.Millisecond)})
				continue
			}
			out = append(out, flows.ExternalState{UserID: id, State: flows.ExternalAccepted})
		}
		return out, nil
	}
	st := e.track(t)
	if st.Requests != 2 || st.Accepted != 2 {
		t.Errorf("cycle = %+v, want 2 requests and both accepted", st)
	}
	if len(calls) != 2 || len(calls[1]) != 1 || calls[1][0] != b.ObjectID {
		t.Errorf("batches = %v, want the second to hold only the throttled %s", calls, b.ObjectID)
	}
	if !slices.ContainsFunc(e.slept(), func(d time.Duration) bool { return d >= 1400*time.Millisecond }) {
		t.Errorf("slept %v, want the item's Retry-After (1.5 s)", e.slept())
	}
	if got := e.load(t, a.ID); got.State != flows.StateAccepted {
		t.Errorf("the unthrottled item is %s, want accepted", got.State)
	}
}

func TestTrackWholeBatchThrottledBacksOff(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	n := 0
	e.dir.ExternalStatesFunc = func(_ context.Context, ids []string) ([]flows.ExternalState, error) {
		if n++; n <= 2 {
			return nil, throttled(3 * time.Second)
		}
		return []flows.ExternalState{{UserID: ids[0], State: flows.ExternalAccepted}}, nil
	}
	if st := e.track(t); st.Accepted != 1 || st.Requests != 3 {
		t.Errorf("cycle = %+v, want accepted after 3 requests", st)
	}
	waits := 0
	for _, d := range e.slept() {
		if d > 2*time.Second {
			waits++
		}
	}
	if waits < 2 {
		t.Errorf("slept %v, want two waits of about Retry-After (3 s)", e.slept())
	}
	if got := e.load(t, inv.ID); got.State != flows.StateAccepted {
		t.Errorf("state = %s, want accepted", got.State)
	}
}

func TestTrackOutageKeepsPendingUntilGraphIsBack(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	e.dir.SetState(inv.ObjectID, flows.ExternalAccepted) // accepted during the outage
	e.dir.ExternalStatesFunc = func(context.Context, []string) ([]flows.ExternalState, error) {
		return nil, &flows.DirectoryError{Op: "read user state", Status: 503, Code: "serviceNotAvailable"}
	}
	if _, err := e.svc.Track(t.Context()); err == nil {
		t.Fatal("Track during an outage returned no error")
	}
	if got := e.load(t, inv.ID); !got.Pending() {
		t.Fatalf("after an outage the invitation is %s, want still pending", got.State)
	}
	e.dir.ExternalStatesFunc = nil
	if st := e.track(t); st.Accepted != 1 {
		t.Errorf("after the outage: %+v, want accepted", st)
	}
	if n := e.note.Count(flows.NoticeAccepted, inv.ID); n != 1 {
		t.Errorf("accepted notices = %d, want 1", n)
	}
}

func TestAcceptedNoticeSurvivesSlackOutageAndRestart(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	slackDown := errors.New("slack down")
	e.note.NotifyFunc = func(_ context.Context, n flows.Notice) error {
		if n.Kind == flows.NoticeAccepted {
			return slackDown
		}
		return nil
	}
	e.dir.SetState(inv.ObjectID, flows.ExternalAccepted)
	e.track(t)
	if got := e.load(t, inv.ID); got.State != flows.StateAccepted || len(got.Outbox) != 1 {
		t.Fatalf("after a failed notice: %s outbox %v, want accepted with the notice kept", got.State, got.Outbox)
	}
	// Restart: a new service on the same store delivers it, once.
	e.svc.Close()
	e.note.NotifyFunc = nil
	e.svc = e.start(t)
	delivered := func() int {
		n := 0
		for _, no := range e.note.Notices() {
			if no.Kind == flows.NoticeAccepted && no.Invitation.ID == inv.ID {
				n++
			}
		}
		return n
	}
	before := delivered() // the failed attempts were recorded too
	e.track(t)
	e.track(t)
	if got := delivered() - before; got != 1 {
		t.Errorf("after the restart the notice was delivered %d times, want 1", got)
	}
	if got := e.load(t, inv.ID); len(got.Outbox) != 0 {
		t.Errorf("outbox = %v, want empty", got.Outbox)
	}
}

func TestReminderOnce(t *testing.T) {
	e := newEnvWith(t, 72*time.Hour)
	inv := e.pending(t, "bob@fabrikam.com")
	e.track(t)
	if n := e.note.Count(flows.NoticeReminder, inv.ID); n != 0 {
		t.Fatalf("a fresh invitation got %d reminders", n)
	}
	e.advance(73 * time.Hour)
	e.track(t)
	e.track(t)
	if n := e.note.Count(flows.NoticeReminder, inv.ID); n != 1 {
		t.Errorf("reminders = %d, want 1", n)
	}
}

func TestResendConcurrentClicksReinviteOnce(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	release := make(chan struct{})
	e.dir.InviteFunc = func(ctx context.Context, in flows.Invite) (flows.Invited, error) {
		<-release
		return e.dir.DefaultInvite(ctx, in)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, busy int
	)
	for range 10 {
		wg.Go(func() {
			_, err := e.svc.Act(t.Context(), inv.ID, inviter, flows.ActionResend)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, flows.ErrInProgress):
				busy++
			default:
				t.Errorf("Act: %v", err)
			}
		})
	}
	wg.Wait()
	close(release)
	e.svc.Wait()
	if ok != 1 || busy != 9 {
		t.Errorf("clicks: %d started, %d in progress; want 1 and 9", ok, busy)
	}
	if n := e.dir.Count("Invite"); n != 2 {
		t.Errorf("POST /invitations %d times, want 2 (the invitation and one resend)", n)
	}
	got := e.load(t, inv.ID)
	if got.Action != nil || got.RedeemURL == inv.RedeemURL || got.Tracking.Resends != 1 {
		t.Errorf("after resend: action %v, new link %v, resends %d", got.Action, got.RedeemURL != inv.RedeemURL, got.Tracking.Resends)
	}
	if n := e.note.Count(flows.NoticeActionDone, inv.ID); n != 1 {
		t.Errorf("action notices = %d, want 1", n)
	}
}

func TestActAuthorization(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	other := flows.Inviter{TeamID: "T1", UserID: "UOTHER"}
	admin := flows.Inviter{TeamID: "T1", UserID: "UADMIN"}
	for _, c := range []struct {
		who  flows.Inviter
		kind flows.ActionKind
		want error
	}{
		{other, flows.ActionResend, flows.ErrNotAuthorized},
		{other, flows.ActionRevokeGroups, flows.ErrNotAuthorized},
		{inviter, flows.ActionReset, flows.ErrNotAuthorized},
		{inviter, flows.ActionDelete, flows.ErrNotAuthorized},
	} {
		if _, err := e.svc.Act(t.Context(), inv.ID, c.who, c.kind); !errors.Is(err, c.want) {
			t.Errorf("%s by %s: %v, want %v", c.kind, c.who.UserID, err, c.want)
		}
	}
	e.svc.Wait()
	if n := e.dir.Count("Invite") + e.dir.Count("RemoveGroupMember") + e.dir.Count("DeleteUser"); n != 1 {
		t.Errorf("refused actions made %d directory writes beyond the invitation", n-1)
	}
	// An admin may reset another inviter's guest.
	if _, err := e.svc.Act(t.Context(), inv.ID, admin, flows.ActionReset); err != nil {
		t.Fatalf("admin reset: %v", err)
	}
	e.svc.Wait()
	got := e.load(t, inv.ID)
	if got.Tracking.Resends != 1 || got.Action != nil {
		t.Errorf("after reset: %+v action %v", got.Tracking, got.Action)
	}
	if n := e.note.Count(flows.NoticeActionDone, inv.ID); n != 1 {
		t.Errorf("action notices = %d, want 1", n)
	}
}

func TestResetSendsResetRedemption(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	e.dir.SetState(inv.ObjectID, flows.ExternalAccepted)
	e.track(t)
	var sent []flows.Invite
	e.dir.InviteFunc = func(ctx context.Context, in flows.Invite) (flows.Invited, error) {
		sent = append(sent, in)
		return e.dir.DefaultInvite(ctx, in)
	}
	if _, err := e.svc.Act(t.Context(), inv.ID, inviter, flows.ActionResend); !errors.Is(err, flows.ErrNotApplicable) {
		t.Errorf("resend after acceptance: %v, want ErrNotApplicable", err)
	}
	admin := flows.Inviter{TeamID: "T1", UserID: "UADMIN"}
	if _, err := e.svc.Act(t.Context(), inv.ID, admin, flows.ActionReset); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	if len(sent) != 1 || !sent[0].ResetRedemption || sent[0].ExistingUserID != inv.ObjectID || sent[0].Email != "bob@fabrikam.com" {
		t.Fatalf("reset sent %+v, want resetRedemption with invitedUser.id", sent)
	}
	if got := e.load(t, inv.ID); !got.Pending() {
		t.Errorf("after reset: %s %+v, want pending again", got.State, got.Tracking)
	}
}

func TestRevokeRemovesAddedGroups(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	if _, err := e.svc.Act(t.Context(), inv.ID, inviter, flows.ActionRevokeGroups); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	for _, g := range []string{"g1", "g2"} {
		if slices.Contains(e.dir.GroupMembers(g), inv.ObjectID) {
			t.Errorf("still a member of %s", g)
		}
	}
	got := e.load(t, inv.ID)
	if got.State != flows.StateRevoked || got.Pending() {
		t.Errorf("state = %s, want revoked and not tracked", got.State)
	}
	if g, _ := e.store.Guest(t.Context(), inv.ObjectID); g == nil || g.State != flows.StateRevoked || len(g.Groups) != 0 {
		t.Errorf("guest = %+v, want revoked without groups", g)
	}
	if st := e.track(t); st.Pending != 0 {
		t.Errorf("a revoked invitation is still tracked: %+v", st)
	}
}

func TestDeleteGuest(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	admin := flows.Inviter{TeamID: "T1", UserID: "UADMIN"}
	if _, err := e.svc.Act(t.Context(), inv.ID, admin, flows.ActionDelete); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	if _, err := e.dir.User(t.Context(), inv.ObjectID); err == nil {
		t.Error("the user still exists")
	}
	if got := e.load(t, inv.ID); got.State != flows.StateRevoked {
		t.Errorf("state = %s, want revoked", got.State)
	}
	if n := e.note.Count(flows.NoticeActionDone, inv.ID); n != 1 {
		t.Errorf("action notices = %d, want 1", n)
	}
}

func TestActionFailureIsReported(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	e.dir.InviteFunc = func(context.Context, flows.Invite) (flows.Invited, error) {
		return flows.Invited{}, &flows.DirectoryError{Op: "invite", Status: 403, Code: "Authorization_RequestDenied", Message: "Insufficient privileges"}
	}
	if _, err := e.svc.Act(t.Context(), inv.ID, inviter, flows.ActionResend); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	got := e.load(t, inv.ID)
	if got.Action != nil || got.RedeemURL != inv.RedeemURL || !got.Pending() {
		t.Errorf("after a failed resend: action %v, link changed %v, pending %v", got.Action, got.RedeemURL != inv.RedeemURL, got.Pending())
	}
	var f *flows.Failure
	for _, n := range e.note.Notices() {
		if n.Kind == flows.NoticeActionFailed {
			f = n.Failure
		}
	}
	if f == nil || f.Code != flows.FailForbidden {
		t.Errorf("failure notice = %+v, want forbidden", f)
	}
}

func TestActionResumesAfterRestart(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	e.dir.InviteFunc = func(ctx context.Context, _ flows.Invite) (flows.Invited, error) {
		<-ctx.Done() // the process stops mid-call
		return flows.Invited{}, ctx.Err()
	}
	if _, err := e.svc.Act(t.Context(), inv.ID, inviter, flows.ActionResend); err != nil {
		t.Fatal(err)
	}
	e.svc.Close()
	if got := e.load(t, inv.ID); got.Action == nil {
		t.Fatal("the interrupted action was not kept")
	}
	e.dir.InviteFunc = nil
	e.svc = e.start(t)
	e.track(t)
	got := e.load(t, inv.ID)
	if got.Action != nil || got.Tracking.Resends != 1 {
		t.Errorf("after restart: action %v resends %d, want the resend done", got.Action, got.Tracking.Resends)
	}
}

func TestConvertInternalUser(t *testing.T) {
	e := newEnv(t)
	admin := flows.Inviter{TeamID: "T1", UserID: "UADMIN"}
	e.dir.AddUser(flows.DirectoryUser{ID: "u-int", DisplayName: "Dana", Mail: "dana@partner.com",
		UserPrincipalName: "dana@contoso.com", UserType: flows.UserTypeMember})
	e.dir.AddUser(flows.DirectoryUser{ID: "u-sync", Mail: "sam@partner.com", UserPrincipalName: "sam@contoso.com",
		OnPremisesUserPrincipalName: "sam@corp.local"})
	e.dir.AddUser(flows.DirectoryUser{ID: "u-other", Mail: "olga@contoso.com", UserPrincipalName: "olga@contoso.com"})
	var sent []flows.Invite
	e.dir.InviteFunc = func(_ context.Context, in flows.Invite) (flows.Invited, error) {
		sent = append(sent, in)
		return flows.Invited{InvitationID: "i1", UserID: in.ExistingUserID, RedeemURL: "https://login.example/redeem"}, nil
	}
	if _, err := e.svc.Convert(t.Context(), inviter, "dana@contoso.com", "dana@partner.com"); !errors.Is(err, flows.ErrNotAuthorized) {
		t.Errorf("convert by a non-admin: %v, want ErrNotAuthorized", err)
	}
	inv, err := e.svc.Convert(t.Context(), admin, "dana@contoso.com", "dana@partner.com")
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	got := e.load(t, inv.ID)
	if got.State != flows.StateNotified || got.ObjectID != "u-int" || !got.Pending() {
		t.Errorf("conversion = %s %s (%+v)", got.State, got.ObjectID, got.Failure)
	}
	if len(sent) != 1 || sent[0].ExistingUserID != "u-int" || sent[0].Email != "dana@partner.com" || sent[0].UserType != "" {
		t.Errorf("sent %+v, want invitedUser.id u-int without a user type", sent)
	}
	for _, c := range []struct{ account, email, want string }{
		{"sam@contoso.com", "sam@partner.com", "on-premises"},
		{"olga@contoso.com", "olga@partner.com", "mail"},
		{"nobody@contoso.com", "nobody@partner.com", "no account"},
	} {
		inv, err := e.svc.Convert(t.Context(), admin, c.account, c.email)
		if err != nil {
			t.Fatalf("Convert %s: %v", c.account, err)
		}
		e.svc.Wait()
		got := e.load(t, inv.ID)
		if got.State != flows.StateFailed || got.Failure.Code != flows.FailConvertRefused || !strings.Contains(got.Failure.Message, c.want) {
			t.Errorf("convert %s: %s %+v, want refused mentioning %q", c.account, got.State, got.Failure, c.want)
		}
	}
	if len(sent) != 1 {
		t.Errorf("refused conversions POSTed invitations: %d", len(sent)-1)
	}
	if _, err := e.svc.Convert(t.Context(), admin, "x@contoso.com", "x@contoso.com"); err == nil {
		t.Error("convert to an address in a verified domain was accepted")
	}
}

func TestInvitationsForInviterAndAdmin(t *testing.T) {
	e := newEnv(t)
	e.pending(t, "bob@fabrikam.com")
	other := flows.Inviter{TeamID: "T1", UserID: "UOTHER"}
	if _, err := e.svc.Submit(t.Context(), "V2", other, flows.Request{Email: "carl@fabrikam.com"}); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	// The Home tab's event carries the user but not always the team.
	mine, all, err := e.svc.InvitationsFor(t.Context(), flows.Inviter{UserID: inviter.UserID})
	if err != nil || all || len(mine) != 1 || mine[0].Request.Email != "bob@fabrikam.com" {
		t.Errorf("inviter sees %d invitations (all=%v, %v), want their one", len(mine), all, err)
	}
	everyone, all, err := e.svc.InvitationsFor(t.Context(), flows.Inviter{UserID: "UADMIN"})
	if err != nil || !all || len(everyone) != 2 {
		t.Errorf("admin sees %d invitations (all=%v, %v), want 2", len(everyone), all, err)
	}
}

// An action asked for while the previous one is still reporting its outcome
// runs at once, not at the next tracking cycle.
func TestSecondActionDuringFirstOnesReportRuns(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	reporting := make(chan struct{})
	release := make(chan struct{})
	e.note.NotifyFunc = func(_ context.Context, n flows.Notice) error {
		if n.Kind == flows.NoticeActionDone && n.Action == flows.ActionResend {
			close(reporting)
			<-release
		}
		return nil
	}
	if _, err := e.svc.Act(t.Context(), inv.ID, inviter, flows.ActionResend); err != nil {
		t.Fatal(err)
	}
	<-reporting // the resend is done and being reported: its Action is cleared
	if _, err := e.svc.Act(t.Context(), inv.ID, inviter, flows.ActionRevokeGroups); err != nil {
		t.Fatal(err)
	}
	close(release)
	e.svc.Wait() // no Track: the revoke must not wait for a cycle
	if got := e.load(t, inv.ID); got.Action != nil || got.State != flows.StateRevoked {
		t.Errorf("after both actions: state %s, action %v; want revoked with nothing pending", got.State, got.Action)
	}
}

// A notice Slack can never deliver (the inviter's account is gone) is
// dropped and the drop recorded, instead of retried forever.
func TestUndeliverableNoticeIsDropped(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	e.note.NotifyFunc = func(_ context.Context, n flows.Notice) error {
		if n.Kind == flows.NoticeAccepted {
			return fmt.Errorf("dm: %w: account_inactive", flows.ErrUndeliverable)
		}
		return nil
	}
	e.dir.SetState(inv.ObjectID, flows.ExternalAccepted)
	e.track(t)
	got := e.load(t, inv.ID)
	if len(got.Outbox) != 0 || got.History[len(got.History)-1].Action != "notice dropped" {
		t.Errorf("outbox %v, last event %+v; want the notice dropped and recorded", got.Outbox, got.History[len(got.History)-1])
	}
	if n := e.note.Count(flows.NoticeAccepted, inv.ID); n != 1 {
		t.Errorf("%d attempts, want 1 (no retries of an undeliverable notice)", n)
	}
}

// Right after a reset Entra may still say Accepted (replication): that is
// not a new acceptance. A later, genuine acceptance is.
func TestStaleAcceptanceAfterResetIgnored(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	before := e.now().Add(-time.Hour)
	state := flows.ExternalState{UserID: inv.ObjectID, State: flows.ExternalAccepted, ChangedAt: before}
	e.dir.ExternalStatesFunc = func(context.Context, []string) ([]flows.ExternalState, error) {
		return []flows.ExternalState{state}, nil
	}
	e.track(t) // the first acceptance
	admin := flows.Inviter{TeamID: "T1", UserID: "UADMIN"}
	if _, err := e.svc.Act(t.Context(), inv.ID, admin, flows.ActionReset); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	e.track(t) // Entra still reports the old acceptance
	if got := e.load(t, inv.ID); !got.Pending() {
		t.Fatalf("a stale Accepted after the reset counted: %s", got.State)
	}
	state.ChangedAt = e.now().Add(time.Minute)
	e.track(t)
	if got := e.load(t, inv.ID); got.State != flows.StateAccepted {
		t.Errorf("the new acceptance was missed: %s", got.State)
	}
	if n := e.note.Count(flows.NoticeAccepted, inv.ID); n != 2 {
		t.Errorf("accepted notices = %d, want 2 (before and after the reset)", n)
	}
}

func TestDeleteOnlyAccountsInvitebotCreated(t *testing.T) {
	e := newEnv(t)
	e.dir.AddUser(flows.DirectoryUser{ID: "u-existing", DisplayName: "Bob", Mail: "bob@fabrikam.com",
		UserType: flows.UserTypeMember, ExternalUserState: flows.ExternalPending})
	inv := e.submit(t, "V1", request())
	if _, err := e.svc.Pick(t.Context(), inv.ID, inviter, "u-existing"); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	admin := flows.Inviter{TeamID: "T1", UserID: "UADMIN"}
	if _, err := e.svc.Act(t.Context(), inv.ID, admin, flows.ActionDelete); !errors.Is(err, flows.ErrNotApplicable) {
		t.Errorf("deleting a picked existing account: %v, want ErrNotApplicable", err)
	}
	// Revoking its groups is fine, and so is a resend of its pending invitation.
	if _, err := e.svc.Act(t.Context(), inv.ID, inviter, flows.ActionResend); err != nil {
		t.Errorf("resend for a picked pending account: %v", err)
	}
}

func TestPolicyReminderAgeReplacesConfig(t *testing.T) {
	e := newEnvWith(t, 72*time.Hour)
	p := e.svc.Policy()
	p.RemindAfter = 24 * time.Hour
	e.svc.SetPolicy(p)
	inv := e.pending(t, "bob@fabrikam.com")
	e.advance(25 * time.Hour)
	e.track(t)
	if n := e.note.Count(flows.NoticeReminder, inv.ID); n != 1 {
		t.Errorf("reminders after 25 h with the policy's 24 h = %d, want 1", n)
	}
	p.RemindAfter = -1 // none
	e.svc.SetPolicy(p)
	other := e.pending(t, "carl@fabrikam.com")
	e.advance(100 * time.Hour)
	e.track(t)
	if n := e.note.Count(flows.NoticeReminder, other.ID); n != 0 {
		t.Errorf("reminders with the policy's 0 = %d, want none", n)
	}
}

// A failure is recorded with its notice: if Slack cannot take it, the next
// tracking cycle (or the first after a restart) tells the inviter.
func TestFailureNoticeIsKeptUntilDelivered(t *testing.T) {
	e := newEnv(t)
	e.dir.InviteFunc = func(context.Context, flows.Invite) (flows.Invited, error) {
		return flows.Invited{}, &flows.DirectoryError{Op: "invite", Status: 400, Code: "BadRequest", Message: "no"}
	}
	slackDown := true
	e.note.NotifyFunc = func(_ context.Context, n flows.Notice) error {
		if n.Kind == flows.NoticeFailed && slackDown {
			return errors.New("slack down")
		}
		return nil
	}
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateFailed || len(inv.Outbox) != 1 {
		t.Fatalf("after a failure Slack could not report: %s, outbox %v", inv.State, inv.Outbox)
	}
	slackDown = false
	e.track(t)
	if got := e.load(t, inv.ID); len(got.Outbox) != 0 {
		t.Errorf("outbox after Slack is back: %v", got.Outbox)
	}
}

// A shutdown while the outcome DM is being sent is not a Slack failure:
// the record stays provisioned, and the next start sends the DM.
func TestShutdownDuringOutcomeDMIsNotAFailure(t *testing.T) {
	e := newEnv(t)
	sending := make(chan struct{})
	e.note.NotifyFunc = func(ctx context.Context, n flows.Notice) error {
		if n.Kind == flows.NoticeDone {
			close(sending)
			<-ctx.Done() // Slack hangs; the process stops
			return ctx.Err()
		}
		return nil
	}
	inv, err := e.svc.Submit(t.Context(), "V1", inviter, request())
	if err != nil {
		t.Fatal(err)
	}
	<-sending
	e.svc.Close()
	if got := e.load(t, inv.ID); got.State != flows.StateProvisioned {
		t.Fatalf("after a shutdown during the DM: %s (%+v), want provisioned", got.State, got.Failure)
	}
	e.note.NotifyFunc = nil
	e.svc = e.start(t)
	e.svc.Wait()
	if got := e.load(t, inv.ID); got.State != flows.StateNotified {
		t.Errorf("after the restart: %s, want notified", got.State)
	}
}

// Ensure a tracking cycle deletes the replica and bulk-file leases that
// have had no holder for LeaseSweepAge, in as many batches as it takes,
// and keeps the background lease, a lease still held, leases released
// more recently and leases under other names.
func TestTrackSweepsStaleLeases(t *testing.T) {
	ctx := t.Context()
	clk := newFakeClock()
	st := flowstest.NewStore()
	st.Now = clk.Now
	svc := flows.New(flows.Config{Directory: flowstest.NewDirectory(), Store: st, Notifier: &flowstest.Notifier{},
		PollInterval: time.Hour})
	t.Cleanup(svc.Close)
	take := func(name string, ttl time.Duration) flows.Lease {
		t.Helper()
		l, err := st.AcquireLease(ctx, name, "r1", ttl)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	release := func(name string) {
		t.Helper()
		if err := st.ReleaseLease(ctx, take(name, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	const files = 1201 // more than two batches
	for i := range files {
		release(fmt.Sprintf("bulk-file/F%04d", i))
	}
	release("replica/gone")
	take("replica/lapsed", time.Minute)
	release(flows.LeaseBackground)
	release("other/x")
	take("replica/held", 3*time.Hour)
	clk.Advance(flows.LeaseSweepAge + 2*time.Minute)
	release("replica/recent")
	stats, err := svc.Track(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := files + 2; stats.LeasesSwept != want {
		t.Errorf("LeasesSwept = %d, want %d", stats.LeasesSwept, want)
	}
	want := []string{flows.LeaseBackground, "other/x", "replica/held", "replica/recent"}
	if got := st.Leases(); !slices.Equal(got, want) {
		t.Errorf("%d leases left (the first: %v), want %v", len(got), got[:min(len(got), 8)], want)
	}
	if stats, err := svc.Track(ctx); err != nil || stats.LeasesSwept != 0 {
		t.Errorf("next cycle = %+v, %v; want nothing more swept", stats, err)
	}
}

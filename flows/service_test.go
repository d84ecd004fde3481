package flows_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

var inviter = flows.Inviter{TeamID: "T1", UserID: "UINVITER"}

// env is a Service on in-memory fakes whose sleeps return at once and are
// recorded.
type env struct {
	svc    *flows.Service
	store  *flowstest.Store
	dir    *flowstest.Directory
	note   *flowstest.Notifier
	mu     sync.Mutex
	sleeps []time.Duration
	offset time.Duration // added to the wall clock by advance
	remind time.Duration // Config.RemindAfter for the next start
	people flows.People  // Config.People; nil: none
	obs    *observer     // Config.Observer
	window time.Duration // Config.ScopedWriteWindow
	// inviteAs and deleg are Config.InviteAs and Config.Delegation.
	inviteAs flows.InviteAs
	deleg    flows.Delegation
}

// now is the services' clock: the wall clock plus what advance added.
func (e *env) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return time.Now().Add(e.offset)
}

// advance moves the services' clock forward.
func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.offset += d
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, 0)
}

// newEnvWith is newEnv with reminders after remind (0: none).
func newEnvWith(t *testing.T, remind time.Duration) *env {
	t.Helper()
	e := &env{store: flowstest.NewStore(), dir: flowstest.NewDirectory(), note: &flowstest.Notifier{}, remind: remind}
	e.svc = e.start(t)
	return e
}

// start builds and starts a Service on e's fakes (again, for restarts).
func (e *env) start(t *testing.T) *flows.Service {
	t.Helper()
	if e.obs == nil {
		e.obs = &observer{}
	}
	svc := flows.New(flows.Config{
		Directory: e.dir, Store: e.store, Notifier: e.note, People: e.people, Observer: e.obs,
		InviteAs: e.inviteAs, Delegation: e.deleg,
		Policy: flows.Policy{
			Admins:             []string{"UADMIN"},
			Groups:             []flows.Group{{Name: "Portal", ID: "g1"}, {Name: "Wiki", ID: "g2"}},
			DefaultRedirectURL: "https://myapplications.microsoft.com",
		},
		Sleep: func(ctx context.Context, d time.Duration) error {
			e.mu.Lock()
			e.sleeps = append(e.sleeps, d)
			e.mu.Unlock()
			return ctx.Err()
		},
		DomainRefresh:     time.Hour,
		Now:               e.now,
		PollInterval:      -1, // tests run Track themselves
		RemindAfter:       e.remind,
		ScopedWriteWindow: e.window,
		StopGrace:         -1, // Close plays a crash: calls in flight are cut off (TestStopGrace tests the grace)
	})
	if _, err := svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

func (e *env) slept() []time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.sleeps)
}

func (e *env) submit(t *testing.T, view string, r flows.Request) *flows.Invitation {
	t.Helper()
	inv, err := e.svc.Submit(t.Context(), view, inviter, r)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	e.svc.Wait()
	got, err := e.store.Invitation(t.Context(), inv.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (e *env) kinds() []flows.NoticeKind {
	var ks []flows.NoticeKind
	for _, n := range e.note.Notices() {
		if n.Kind != flows.NoticeProgress {
			ks = append(ks, n.Kind)
		}
	}
	return ks
}

func request() flows.Request {
	return flows.Request{Email: "bob@fabrikam.com", DisplayName: "Bob", Groups: []string{"g1", "g2"},
		Attributes: flows.Attributes{CompanyName: "Fabrikam"}}
}

func throttled(after time.Duration) error {
	return &flows.DirectoryError{Op: "invite", Status: http.StatusTooManyRequests, Code: "TooManyRequests", RetryAfter: after}
}

func TestNewGuest(t *testing.T) {
	e := newEnv(t)
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateNotified {
		t.Fatalf("state = %s (%+v), want notified", inv.State, inv.Failure)
	}
	if inv.ObjectID == "" || inv.RedeemURL == "" || !slices.Equal(inv.GroupsAdded, []string{"g1", "g2"}) {
		t.Errorf("invitation = %+v", inv)
	}
	if got := e.dir.GroupMembers("g1"); !slices.Contains(got, inv.ObjectID) {
		t.Errorf("g1 members = %v, want the guest", got)
	}
	g, err := e.store.Guest(t.Context(), inv.ObjectID)
	if err != nil || g.Email != "bob@fabrikam.com" || g.InvitedBy != inviter || g.State != flows.StateProvisioned {
		t.Errorf("guest = %+v, %v", g, err)
	}
	if got, want := e.kinds(), []flows.NoticeKind{flows.NoticeDone}; !slices.Equal(got, want) {
		t.Errorf("notices = %v, want %v", got, want)
	}
	var actions []string
	for _, ev := range inv.History {
		actions = append(actions, ev.Action)
	}
	want := []string{"requested", "checking directory", "no existing user", "invited", "attributes set",
		"added to group", "added to group", "groups done", "provisioned", "inviter notified", "sponsor recorded"}
	if !slices.Equal(actions, want) {
		t.Errorf("history = %q\nwant      %q", actions, want)
	}
	audit, err := e.store.AuditLog(t.Context(), time.Time{})
	if err != nil || len(audit) != len(want) {
		t.Errorf("audit log has %d entries (%v), want %d", len(audit), err, len(want))
	}
}

func TestExistingUserPick(t *testing.T) {
	e := newEnv(t)
	e.dir.AddUser(flows.DirectoryUser{ID: "u-existing", DisplayName: "Bob", Mail: "bob@fabrikam.com", UserType: flows.UserTypeGuest})
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateAwaitingPick || len(inv.Matches) != 1 {
		t.Fatalf("state = %s matches = %v, want awaiting_pick with 1 match", inv.State, inv.Matches)
	}
	if _, err := e.svc.Pick(t.Context(), inv.ID, flows.Inviter{TeamID: "T1", UserID: "UOTHER"}, "u-existing"); !errors.Is(err, flows.ErrNotAuthorized) {
		t.Errorf("Pick by another user: err = %v, want ErrNotAuthorized", err)
	}
	if _, err := e.svc.Pick(t.Context(), inv.ID, inviter, "u-not-a-match"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("Pick of a non-match: err = %v, want ErrNotFound", err)
	}
	if _, err := e.svc.Pick(t.Context(), inv.ID, inviter, "u-existing"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Pick(t.Context(), inv.ID, inviter, "u-existing"); !errors.Is(err, flows.ErrWrongState) {
		t.Errorf("second Pick: err = %v, want ErrWrongState", err)
	}
	e.svc.Wait()
	inv, _ = e.store.Invitation(t.Context(), inv.ID)
	if inv.State != flows.StateNotified || !inv.Picked || inv.ObjectID != "u-existing" || inv.RedeemURL != "" {
		t.Errorf("invitation = %+v", inv)
	}
	if n := e.dir.Count("Invite"); n != 0 {
		t.Errorf("%d invitations sent, want 0 for a picked user", n)
	}
	if got := e.dir.GroupMembers("g2"); !slices.Contains(got, "u-existing") {
		t.Errorf("g2 members = %v", got)
	}
}

func TestPickNewInvites(t *testing.T) {
	e := newEnv(t)
	e.dir.AddUser(flows.DirectoryUser{ID: "u-old", Mail: "bob@fabrikam.com"})
	inv := e.submit(t, "V1", request())
	if _, err := e.svc.Pick(t.Context(), inv.ID, inviter, ""); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	inv, _ = e.store.Invitation(t.Context(), inv.ID)
	if inv.State != flows.StateNotified || e.dir.Count("Invite") != 1 {
		t.Errorf("state = %s, invites = %d", inv.State, e.dir.Count("Invite"))
	}
}

func TestCancelPick(t *testing.T) {
	e := newEnv(t)
	e.dir.AddUser(flows.DirectoryUser{ID: "u-old", Mail: "bob@fabrikam.com"})
	inv := e.submit(t, "V1", request())
	if err := e.svc.Cancel(t.Context(), inv.ID, inviter); err != nil {
		t.Fatal(err)
	}
	inv, _ = e.store.Invitation(t.Context(), inv.ID)
	if inv.State != flows.StateFailed || inv.Failure.Code != flows.FailCancelled {
		t.Errorf("invitation = %+v", inv)
	}
	// The address is free again.
	if _, err := e.svc.Submit(t.Context(), "V2", inviter, request()); err != nil {
		t.Errorf("Submit after cancel: %v", err)
	}
}

func TestDuplicateSubmission(t *testing.T) {
	e := newEnv(t)
	first, err := e.svc.Submit(t.Context(), "V1", inviter, request())
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.svc.Submit(t.Context(), "V1", inviter, request())
	if err != nil || again.ID != first.ID {
		t.Fatalf("re-delivered submission = %v, %v; want invitation %s", again, err, first.ID)
	}
	_, err = e.svc.Submit(t.Context(), "V2", inviter, request())
	var fe flows.FieldErrors
	if e.svc.Wait(); err == nil {
		// The first may have finished already; then a new one is fine.
		if inv, _ := e.store.Invitation(t.Context(), first.ID); !inv.State.Terminal() {
			t.Errorf("second dialog for an in-flight address was accepted")
		}
	} else if !errors.As(err, &fe) || fe[flows.FieldEmail] == "" {
		t.Errorf("second dialog: err = %v, want a field error on email", err)
	}
	if n := len(e.dir.Users()); n != 1 {
		t.Errorf("%d users in the directory, want 1", n)
	}
}

func TestValidationRecordsNothing(t *testing.T) {
	e := newEnv(t)
	r := request()
	r.Email = "alice@contoso.com" // verified domain of the fake
	_, err := e.svc.Submit(t.Context(), "V1", inviter, r)
	var fe flows.FieldErrors
	if !errors.As(err, &fe) || fe[flows.FieldEmail] == "" {
		t.Fatalf("err = %v, want an email field error", err)
	}
	if invs, _ := e.store.Invitations(t.Context(), flows.InvitationFilter{}); len(invs) != 0 || len(e.dir.Calls()) != 1 /* VerifiedDomains */ {
		t.Errorf("rejected submission left %d records and %d directory calls", len(invs), len(e.dir.Calls()))
	}
}

func TestThrottledInviteRetriesAfterRetryAfter(t *testing.T) {
	e := newEnv(t)
	var n int
	e.dir.InviteFunc = func(ctx context.Context, inv flows.Invite) (flows.Invited, error) {
		if n++; n <= 2 {
			return flows.Invited{}, throttled(2500 * time.Millisecond)
		}
		return e.dir.DefaultInvite(ctx, inv)
	}
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateNotified || inv.InviteAttempt != 3 {
		t.Fatalf("state = %s attempts = %d", inv.State, inv.InviteAttempt)
	}
	if got := e.slept(); !slices.Equal(got, []time.Duration{2500 * time.Millisecond, 2500 * time.Millisecond}) {
		t.Errorf("slept %v, want Retry-After twice", got)
	}
	if got := e.kinds(); !slices.Equal(got, []flows.NoticeKind{flows.NoticeRetrying, flows.NoticeRetrying, flows.NoticeDone}) {
		t.Errorf("notices = %v", got)
	}
}

func TestThrottlingBeyondBudgetFails(t *testing.T) {
	e := newEnv(t)
	e.dir.InviteFunc = func(context.Context, flows.Invite) (flows.Invited, error) { return flows.Invited{}, throttled(0) }
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateFailed || inv.Failure.Code != flows.FailThrottled || !inv.Failure.Retryable {
		t.Fatalf("invitation = %s %+v", inv.State, inv.Failure)
	}
	if got, want := len(e.slept()), flows.DefaultTransient.Attempts-1; got != want {
		t.Errorf("%d waits, want %d", got, want)
	}
	if got := e.kinds(); got[len(got)-1] != flows.NoticeFailed {
		t.Errorf("last notice = %v, want failed", got)
	}
}

func TestGraphErrorsFail(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		want   flows.FailureCode
	}{
		{"Forbidden", http.StatusForbidden, flows.FailForbidden},
		{"BadRequest", http.StatusBadRequest, flows.FailRejected},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.dir.InviteFunc = func(context.Context, flows.Invite) (flows.Invited, error) {
				return flows.Invited{}, &flows.DirectoryError{Op: "invite", Status: tt.status, Code: "X", Message: "Graph says no"}
			}
			inv := e.submit(t, "V1", request())
			if inv.State != flows.StateFailed || inv.Failure.Code != tt.want || inv.Failure.Step != flows.StateInviting {
				t.Fatalf("invitation = %s %+v", inv.State, inv.Failure)
			}
			if tt.want == flows.FailRejected && inv.Failure.Message != "Graph says no" {
				t.Errorf("failure message = %q", inv.Failure.Message)
			}
			if e.dir.Count("Invite") != 1 {
				t.Errorf("invite tried %d times, want 1 (not retryable)", e.dir.Count("Invite"))
			}
		})
	}
}

func TestReplicationDelayIsRetried(t *testing.T) {
	e := newEnv(t)
	var n int
	e.dir.AddGroupMemberFunc = func(ctx context.Context, gid, uid string) error {
		if n++; n <= 3 {
			return &flows.DirectoryError{Op: "add group member", Status: http.StatusNotFound, Code: "Request_ResourceNotFound"}
		}
		return e.dir.DefaultAddGroupMember(ctx, gid, uid)
	}
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateNotified {
		t.Fatalf("state = %s %+v", inv.State, inv.Failure)
	}
	if got := e.slept(); !slices.Equal(got, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}) {
		t.Errorf("slept %v, want 1s 2s 4s", got)
	}
}

func TestReplicationBeyondBudgetFails(t *testing.T) {
	e := newEnv(t)
	e.dir.UpdateUserFunc = func(context.Context, string, flows.Attributes) error {
		return &flows.DirectoryError{Op: "update user", Status: http.StatusNotFound}
	}
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateFailed || inv.Failure.Code != flows.FailNotFound || inv.Failure.Step != flows.StateInvited {
		t.Fatalf("invitation = %s %+v", inv.State, inv.Failure)
	}
	var total time.Duration
	for _, d := range e.slept() {
		total += d
	}
	if total < time.Minute || total > 2*time.Minute {
		t.Errorf("replication budget = %v, want 1–2 min", total)
	}
}

// Ensure a POST whose answer was lost is not re-sent when Microsoft emails
// the guest (a second email), but the guest it created is adopted.
func TestAmbiguousFailureWithMicrosoftEmailAdoptsUser(t *testing.T) {
	e := newEnv(t)
	var n int
	e.dir.InviteFunc = func(ctx context.Context, inv flows.Invite) (flows.Invited, error) {
		n++
		if _, err := e.dir.DefaultInvite(ctx, inv); err != nil { // the write happens…
			return flows.Invited{}, err
		}
		return flows.Invited{}, &flows.DirectoryError{Op: "invite", Status: http.StatusGatewayTimeout} // …the answer is lost
	}
	r := request()
	r.Delivery = flows.DeliveryMicrosoftEmail
	inv := e.submit(t, "V1", r)
	if inv.State != flows.StateNotified || n != 1 || inv.ObjectID == "" {
		t.Fatalf("state = %s, POSTs = %d, object = %q", inv.State, n, inv.ObjectID)
	}
}

func TestAmbiguousFailureWithSlackLinkRePosts(t *testing.T) {
	e := newEnv(t)
	var n int
	e.dir.InviteFunc = func(ctx context.Context, inv flows.Invite) (flows.Invited, error) {
		res, err := e.dir.DefaultInvite(ctx, inv)
		if n++; n == 1 {
			return flows.Invited{}, &flows.DirectoryError{Op: "invite", Status: http.StatusServiceUnavailable}
		}
		return res, err
	}
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateNotified || n != 2 || inv.RedeemURL == "" || len(e.dir.Users()) != 1 {
		t.Fatalf("state = %s, POSTs = %d, users = %d", inv.State, n, len(e.dir.Users()))
	}
}

func TestInternalDomainCaughtBeforeInvite(t *testing.T) {
	e := newEnv(t)
	// Domains unknown at submit time (Graph was down at start-up).
	domains := e.dir.VerifiedDomainsFunc
	e.dir.VerifiedDomainsFunc = func(context.Context) ([]string, error) {
		return nil, &flows.DirectoryError{Op: "organization", Status: http.StatusForbidden}
	}
	svc := e.start(t)
	e.dir.VerifiedDomainsFunc = domains
	r := request()
	r.Email = "alice@contoso.com"
	inv, err := svc.Submit(t.Context(), "V1", inviter, r)
	if err != nil {
		t.Fatalf("Submit with unknown domains: %v", err)
	}
	svc.Wait()
	inv, _ = e.store.Invitation(t.Context(), inv.ID)
	if inv.State != flows.StateFailed || inv.Failure.Code != flows.FailInternalUser || e.dir.Count("Invite") != 0 {
		t.Fatalf("invitation = %s %+v, invites = %d", inv.State, inv.Failure, e.dir.Count("Invite"))
	}
}

func TestSlackDownFailsNotifyAfterRetries(t *testing.T) {
	e := newEnv(t)
	e.note.NotifyFunc = func(_ context.Context, n flows.Notice) error {
		if n.Final() {
			return errors.New("slack: 503")
		}
		return nil
	}
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateFailed || inv.Failure.Code != flows.FailNotify || inv.Failure.Step != flows.StateProvisioned {
		t.Fatalf("invitation = %s %+v", inv.State, inv.Failure)
	}
	if _, err := e.store.Guest(t.Context(), inv.ObjectID); err != nil {
		t.Errorf("guest not provisioned: %v", err)
	}
}

// Ensure a restart resumes an invitation from its recorded state without
// repeating what was done.
func TestResumeAfterCrash(t *testing.T) {
	e := newEnv(t)
	e.dir.AddGroupMemberFunc = func(ctx context.Context, gid, uid string) error {
		if gid == "g2" {
			<-ctx.Done() // the process dies while adding the second group
			return ctx.Err()
		}
		return e.dir.DefaultAddGroupMember(ctx, gid, uid)
	}
	inv, err := e.svc.Submit(t.Context(), "V1", inviter, request())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.note.WaitFor(t.Context(), func(ns []flows.Notice) bool {
		for _, n := range ns {
			if n.Invitation.State == flows.StateAttributesSet {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	e.svc.Close()
	mid, _ := e.store.Invitation(t.Context(), inv.ID)
	if mid.State.Terminal() {
		t.Fatalf("state after crash = %s, want unfinished", mid.State)
	}
	e.dir.AddGroupMemberFunc = nil
	svc := e.start(t)
	svc.Wait()
	done, _ := e.store.Invitation(t.Context(), inv.ID)
	if done.State != flows.StateNotified || e.dir.Count("Invite") != 1 || !slices.Equal(done.GroupsAdded, []string{"g1", "g2"}) {
		t.Fatalf("after resume: state = %s invites = %d groups = %v", done.State, e.dir.Count("Invite"), done.GroupsAdded)
	}
}

// A user created by a POST whose answer was lost may not be visible to the
// lookup at once: the lookup is repeated before re-POSTing (which would
// send Microsoft's email a second time).
func TestAmbiguousFailureWaitsForReplicationBeforeRePosting(t *testing.T) {
	e := newEnv(t)
	var posts, lookups int
	e.dir.InviteFunc = func(ctx context.Context, inv flows.Invite) (flows.Invited, error) {
		posts++
		if _, err := e.dir.DefaultInvite(ctx, inv); err != nil {
			return flows.Invited{}, err
		}
		return flows.Invited{}, &flows.DirectoryError{Op: "invite", Status: http.StatusGatewayTimeout}
	}
	e.dir.FindUsersFunc = func(ctx context.Context, email string, withUPN bool) ([]flows.DirectoryUser, error) {
		if lookups++; lookups <= 2 { // the check before inviting, and the first recovery lookup
			return nil, nil
		}
		e.dir.FindUsersFunc = nil
		return e.dir.FindUsers(ctx, email, withUPN)
	}
	r := request()
	r.Delivery = flows.DeliveryMicrosoftEmail
	inv := e.submit(t, "V1", r)
	if inv.State != flows.StateNotified || posts != 1 {
		t.Fatalf("state = %s, POSTs = %d; want notified after one POST", inv.State, posts)
	}
}

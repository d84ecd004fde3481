package flows_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

const inviterOID = "oid-dana"

// newDelegEnv is newEnv with INVITEBOT_INVITE_AS=mode and a fake
// Delegation on the same directory.
func newDelegEnv(t *testing.T, mode flows.InviteAs) (*env, *flowstest.Delegation) {
	t.Helper()
	e := &env{store: flowstest.NewStore(), dir: flowstest.NewDirectory(), note: &flowstest.Notifier{}, inviteAs: mode}
	d := &flowstest.Delegation{Directory: e.dir}
	e.deleg = d
	e.svc = e.start(t)
	return e, d
}

func (e *env) count(op string) int { return e.dir.Count(op) }

func (e *env) reload(t *testing.T, id string) *flows.Invitation {
	t.Helper()
	got, err := e.store.Invitation(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func historyHas(inv *flows.Invitation, action, detailPart string) bool {
	return slices.ContainsFunc(inv.History, func(ev flows.Event) bool {
		return ev.Action == action && strings.Contains(ev.Detail, detailPart)
	})
}

// Ensure an invitation by a person who has not connected waits, asks them
// once to connect, sends nothing, and goes on as them once they connect.
func TestInviteAsInviterWaitsForSignIn(t *testing.T) {
	e, d := newDelegEnv(t, flows.InviteAsInviter)
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateAwaitingSignIn {
		t.Fatalf("state = %s, want awaiting_sign_in", inv.State)
	}
	if n := e.note.Count(flows.NoticeSignIn, inv.ID); n != 1 {
		t.Errorf("sign-in notices = %d, want 1", n)
	}
	if e.count("Invite")+e.count("InviteAs") != 0 {
		t.Fatalf("invited before the inviter connected: %v", e.dir.Calls())
	}
	if got := inv.History[len(inv.History)-2].Action; got != "checking directory" {
		t.Errorf("awaiting_sign_in follows %q, want checking", got)
	}

	d.Connect(inviter.UserID, flows.Connection{ObjectID: inviterOID, Name: "Dana"})
	n, err := e.svc.Connected(t.Context(), inviter.UserID)
	if err != nil || n != 1 {
		t.Fatalf("Connected = %d, %v; want 1", n, err)
	}
	e.svc.Wait()
	inv = e.reload(t, inv.ID)
	if inv.State != flows.StateNotified {
		t.Fatalf("state = %s (%+v), want notified", inv.State, inv.Failure)
	}
	if e.count("InviteAs") != 1 || e.count("Invite") != 0 {
		t.Errorf("POST /invitations: %d as the inviter, %d as the app; want 1, 0", e.count("InviteAs"), e.count("Invite"))
	}
	if e.count("FindUsers") == 0 || e.count("AddGroupMember") != 2 {
		t.Errorf("lookups and group adds are the app's: %v", e.dir.Calls())
	}
	if !historyHas(inv, "invited", "as inviter "+inviterOID) {
		t.Errorf("history does not say it was sent as the inviter: %+v", inv.History)
	}
	if n, _ := e.svc.Connected(t.Context(), inviter.UserID); n != 0 {
		t.Errorf("second Connected moved %d invitations", n)
	}
}

// Ensure inviter_or_app sends as the app until the person connects, and as
// them afterwards; app mode never asks anyone to connect.
func TestInviteAsInviterOrApp(t *testing.T) {
	e, d := newDelegEnv(t, flows.InviteAsInviterOrApp)
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateNotified || !historyHas(inv, "invited", "as app") || e.count("Invite") != 1 {
		t.Fatalf("unconnected: state %s, calls %v", inv.State, e.dir.Calls())
	}
	d.Connect(inviter.UserID, flows.Connection{ObjectID: inviterOID})
	r := request()
	r.Email = "carol@fabrikam.com"
	inv = e.submit(t, "V2", r)
	if inv.State != flows.StateNotified || !historyHas(inv, "invited", "as inviter "+inviterOID) || e.count("InviteAs") != 1 {
		t.Fatalf("connected: state %s, calls %v", inv.State, e.dir.Calls())
	}

	app, d2 := newDelegEnv(t, flows.InviteAsApp)
	d2.Connect(inviter.UserID, flows.Connection{ObjectID: inviterOID})
	inv = app.submit(t, "V1", request())
	if !historyHas(inv, "invited", "as app") || app.count("InviteAs") != 0 || len(app.note.Notices()) == 0 ||
		app.note.Count(flows.NoticeSignIn, inv.ID) != 0 {
		t.Errorf("app mode: calls %v", app.dir.Calls())
	}
}

// Ensure Entra refusing the person fails the invitation with their
// refusal and Graph's message, and creates no guest.
func TestInviteAsInviterRefused(t *testing.T) {
	e, d := newDelegEnv(t, flows.InviteAsInviter)
	d.Connect(inviter.UserID, flows.Connection{ObjectID: inviterOID})
	d.InviteFunc = func(context.Context, string, flows.Invite) (flows.Invited, error) {
		return flows.Invited{}, &flows.DirectoryError{Op: "invite", Status: http.StatusForbidden,
			Code: "Authorization_RequestDenied", Message: "Insufficient privileges to complete the operation."}
	}
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateFailed || inv.Failure.Code != flows.FailInviterRefused ||
		inv.Failure.Message != "Insufficient privileges to complete the operation." {
		t.Fatalf("state %s, failure %+v; want failed inviter_refused with Graph's message", inv.State, inv.Failure)
	}
	if len(e.dir.Users()) != 0 || e.count("AddGroupMember") != 0 {
		t.Errorf("a refused invitation went on: %v", e.dir.Calls())
	}
	if e.note.Count(flows.NoticeFailed, inv.ID) != 1 {
		t.Error("the inviter was not told")
	}
}

// Ensure a refresh token Microsoft refuses at POST time parks the
// invitation (nothing sent), and reconnecting sends it exactly once.
func TestInviteAsInviterReconnect(t *testing.T) {
	e, d := newDelegEnv(t, flows.InviteAsInviter)
	d.Connect(inviter.UserID, flows.Connection{ObjectID: inviterOID})
	revoked := true
	d.InviteFunc = func(ctx context.Context, _ string, in flows.Invite) (flows.Invited, error) {
		if revoked {
			return flows.Invited{}, &flows.SignInError{Reason: flows.SignInExpired, Code: "AADSTS50173"}
		}
		return e.dir.DefaultInvite(ctx, in)
	}
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateAwaitingSignIn || !historyHas(inv, "awaiting sign-in", "reconnect") ||
		!historyHas(inv, "awaiting sign-in", "AADSTS50173") {
		t.Fatalf("state %s, history %+v; want awaiting_sign_in asking to reconnect", inv.State, inv.History)
	}
	if len(e.dir.Users()) != 0 {
		t.Fatal("a guest exists although no token was had")
	}
	revoked = false
	if _, err := e.svc.Connected(t.Context(), inviter.UserID); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	inv = e.reload(t, inv.ID)
	if inv.State != flows.StateNotified || len(e.dir.Users()) != 1 {
		t.Fatalf("after reconnecting: state %s, users %d", inv.State, len(e.dir.Users()))
	}
}

// Ensure a restart picks up an invitation whose inviter connected just
// before the crash, and one that waited 24 hours fails as not connected.
func TestInviteAsInviterRestartAndTimeout(t *testing.T) {
	e, d := newDelegEnv(t, flows.InviteAsInviter)
	first := e.submit(t, "V1", request())
	r := request()
	r.Email = "carol@fabrikam.com"
	other := flows.Inviter{TeamID: "T1", UserID: "UOTHER"}
	second, err := e.svc.Submit(t.Context(), "V2", other, r)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	// The inviter connects; the process dies before Connected runs.
	d.Connect(inviter.UserID, flows.Connection{ObjectID: inviterOID})
	e.svc.Close()
	e.svc = e.start(t)
	e.svc.Wait()
	if got := e.reload(t, first.ID); got.State != flows.StateNotified || e.count("InviteAs") != 1 {
		t.Fatalf("after restart: %s, %d delegated POSTs; want notified, 1", got.State, e.count("InviteAs"))
	}
	if got := e.reload(t, second.ID); got.State != flows.StateAwaitingSignIn {
		t.Fatalf("the other inviter's invitation: %s, want still awaiting_sign_in", got.State)
	}
	e.advance(flows.SignInTimeout - time.Minute)
	if _, err := e.svc.Track(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := e.reload(t, second.ID); got.State != flows.StateAwaitingSignIn {
		t.Fatalf("failed before 24 hours: %s", got.State)
	}
	e.advance(2 * time.Minute)
	if _, err := e.svc.Track(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	got := e.reload(t, second.ID)
	if got.State != flows.StateFailed || got.Failure.Code != flows.FailNotConnected {
		t.Fatalf("after 24 hours: %s %+v; want failed not_connected", got.State, got.Failure)
	}
}

// Ensure a resend goes out as the person who asks for it.
func TestResendAsInviter(t *testing.T) {
	e, d := newDelegEnv(t, flows.InviteAsInviter)
	d.Connect(inviter.UserID, flows.Connection{ObjectID: inviterOID})
	inv := e.submit(t, "V1", request())
	if _, err := e.svc.Act(t.Context(), inv.ID, inviter, flows.ActionResend); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	inv = e.reload(t, inv.ID)
	if e.count("InviteAs") != 2 || e.count("Invite") != 0 || !historyHas(inv, "resend", "as inviter "+inviterOID) {
		t.Fatalf("calls %v, history %+v", e.dir.Calls(), inv.History)
	}
	d.Disconnect(inviter.UserID)
	if _, err := e.svc.Act(t.Context(), inv.ID, inviter, flows.ActionResend); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	var failed *flows.Failure
	for _, n := range e.note.Notices() {
		if n.Kind == flows.NoticeActionFailed {
			failed = n.Failure
		}
	}
	if failed == nil || failed.Code != flows.FailNotConnected || e.count("InviteAs") != 2 {
		t.Fatalf("resend while disconnected: failure %+v, calls %v", failed, e.dir.Calls())
	}
	if !errors.Is(&flows.SignInError{}, flows.ErrSignInNeeded) {
		t.Error("SignInError is not ErrSignInNeeded")
	}
}

func TestSignInStoreFake(t *testing.T) {
	flowstest.TestSignInStore(t, func(*testing.T) flows.SignInStore { return &flowstest.SignInStore{} })
}

// signInBackedStore is the in-memory store keeping sign-in records too, as
// bbolt and PostgreSQL do.
type signInBackedStore struct {
	*flowstest.Store
	*flowstest.SignInStore
}

// Ensure each tracking cycle deletes the expired sign-in records (connect
// links, sign-ins in progress), more than one batch of them if need be,
// and keeps the connections and the records still valid.
func TestTrackSweepsExpiredSignIns(t *testing.T) {
	st := signInBackedStore{flowstest.NewStore(), &flowstest.SignInStore{}}
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	svc := flows.New(flows.Config{Directory: flowstest.NewDirectory(), Store: st, Notifier: &flowstest.Notifier{},
		PollInterval: -1, Now: func() time.Time { return now }})
	t.Cleanup(svc.Close)
	ctx := t.Context()
	put := func(key string, expires time.Time) {
		t.Helper()
		if err := st.PutSignInRecord(ctx, key, []byte("v"), expires); err != nil {
			t.Fatal(err)
		}
	}
	const expired = 1234 // more than one batch
	for i := range expired {
		put(fmt.Sprintf("link/%04d", i), now.Add(-time.Duration(i+1)*time.Second))
	}
	put("flow/valid", now.Add(time.Minute))
	put("conn/U1", time.Time{})
	stats, err := svc.Track(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.SignInsSwept != expired {
		t.Errorf("swept %d, want %d", stats.SignInsSwept, expired)
	}
	for _, k := range []string{"link/0000", fmt.Sprintf("link/%04d", expired-1)} {
		if _, err := st.SignInRecord(ctx, k); !errors.Is(err, flows.ErrNotFound) {
			t.Errorf("%s kept: %v", k, err)
		}
	}
	for _, k := range []string{"flow/valid", "conn/U1"} {
		if _, err := st.SignInRecord(ctx, k); err != nil {
			t.Errorf("%s deleted: %v", k, err)
		}
	}
	if stats, _ := svc.Track(ctx); stats.SignInsSwept != 0 {
		t.Errorf("second cycle swept %d, want 0", stats.SignInsSwept)
	}
}

// Ensure the background work (the leader's) sweeps on its own: a link
// that expired is deleted by the tracker's first cycle.
func TestBackgroundSweepsExpiredSignIns(t *testing.T) {
	st := signInBackedStore{flowstest.NewStore(), &flowstest.SignInStore{}}
	svc := flows.New(flows.Config{Directory: flowstest.NewDirectory(), Store: st, Notifier: &flowstest.Notifier{},
		PollInterval: time.Hour})
	t.Cleanup(svc.Close)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	if err := st.PutSignInRecord(ctx, "link/old", []byte("v"), time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Background(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := st.SignInRecord(ctx, "link/old"); errors.Is(err, flows.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired link was not deleted by the background work")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

const bulkTwo = "email,send microsoft email\nbob@fabrikam.com,true\ncarol@fabrikam.com,false\n"

// Ensure a bulk run in inviter mode by a person who is not connected (or
// whose sign-in Microsoft refuses) is refused as a whole: nothing recorded,
// looked up, sent or notified; once they are connected every row goes as
// them.
func TestRunBulkAsInviterNotConnected(t *testing.T) {
	e, d := newDelegEnv(t, flows.InviteAsInviter)
	calls := len(e.dir.Calls()) // the start's
	_, err := e.svc.RunBulk(t.Context(), inviter, parse(t, bulkTwo), flows.BulkOptions{})
	var se *flows.SignInError
	if !errors.Is(err, flows.ErrSignInNeeded) || !errors.As(err, &se) || se.Reason != flows.SignInNotConnected {
		t.Fatalf("err = %v, want a not-connected SignInError", err)
	}
	d.Connect(inviter.UserID, flows.Connection{ObjectID: inviterOID})
	d.ReadyFunc = func(context.Context, string) error {
		return &flows.SignInError{Reason: flows.SignInExpired, Code: "AADSTS700082"}
	}
	_, err = e.svc.RunBulk(t.Context(), inviter, parse(t, bulkTwo), flows.BulkOptions{})
	if !errors.As(err, &se) || se.Reason != flows.SignInExpired {
		t.Fatalf("err = %v, want an expired SignInError", err)
	}
	invs, _ := e.store.Invitations(t.Context(), flows.InvitationFilter{})
	if len(invs) != 0 || len(e.dir.Calls()) != calls || len(e.note.Notices()) != 0 {
		t.Fatalf("a refused run left %d invitations, calls %v, notices %v", len(invs), e.dir.Calls(), e.note.Notices())
	}

	d.ReadyFunc = nil
	res := e.bulkRun(t, bulkTwo, flows.BulkOptions{})
	for _, r := range res {
		if r.Outcome != flows.BulkInvited {
			t.Errorf("line %d: %s %s", r.Line, r.Outcome, r.Reason)
		}
	}
	if e.count("InviteAs") != 2 || e.count("Invite") != 0 {
		t.Errorf("POST /invitations: %d as the inviter, %d as the app; want 2, 0", e.count("InviteAs"), e.count("Invite"))
	}
}

// Ensure inviter_or_app runs the file of a person who is not connected as
// the app, and app mode never asks.
func TestRunBulkInviterOrAppNotConnected(t *testing.T) {
	for _, mode := range []flows.InviteAs{flows.InviteAsInviterOrApp, flows.InviteAsApp} {
		e, _ := newDelegEnv(t, mode)
		res := e.bulkRun(t, bulkTwo, flows.BulkOptions{})
		if len(res) != 2 || res[0].Outcome != flows.BulkInvited || res[1].Outcome != flows.BulkInvited {
			t.Fatalf("%s: %+v", mode, res)
		}
		if e.count("Invite") != 2 || e.count("InviteAs") != 0 {
			t.Errorf("%s: POST /invitations: %d as the app, %d as the inviter; want 2, 0", mode, e.count("Invite"), e.count("InviteAs"))
		}
	}
}

// Ensure rows whose inviter's sign-in Microsoft stops accepting during the
// run wait (outcome awaiting_sign_in, no DM per row: the run reports them
// once), and all go as the inviter, once each, after they reconnect.
func TestRunBulkSignInRevokedDuringRun(t *testing.T) {
	e, d := newDelegEnv(t, flows.InviteAsInviter)
	d.Connect(inviter.UserID, flows.Connection{ObjectID: inviterOID})
	var mu sync.Mutex
	revoked := true
	d.InviteFunc = func(ctx context.Context, who string, in flows.Invite) (flows.Invited, error) {
		mu.Lock()
		r := revoked
		mu.Unlock()
		if r { // as the adapter does: a refused refresh token is deleted
			d.Disconnect(who)
			return flows.Invited{}, &flows.SignInError{Reason: flows.SignInExpired, Code: "AADSTS50173"}
		}
		return e.dir.DefaultInvite(ctx, in)
	}
	res := e.bulkRun(t, bulkTwo, flows.BulkOptions{})
	for _, r := range res {
		if r.Outcome != flows.BulkAwaitingSignIn || r.Outcome.OK() || !strings.Contains(r.Reason, "reconnect") {
			t.Errorf("line %d: %s %q, want awaiting_sign_in", r.Line, r.Outcome, r.Reason)
		}
	}
	if s := flows.Summarize(res).String(); s != "2 awaiting sign in" {
		t.Errorf("summary %q", s)
	}
	if n := len(e.note.Notices()); n != 0 {
		t.Errorf("%d notices for the waiting rows, want none (the run reports them)", n)
	}
	if len(e.dir.Users()) != 0 {
		t.Fatal("a guest exists although no token was had")
	}
	mu.Lock()
	revoked = false
	mu.Unlock()
	d.Connect(inviter.UserID, flows.Connection{ObjectID: inviterOID})
	if n, err := e.svc.Connected(t.Context(), inviter.UserID); err != nil || n != 2 {
		t.Fatalf("Connected = %d, %v; want 2", n, err)
	}
	e.svc.Wait()
	for _, r := range res {
		if inv := e.reload(t, r.InvitationID); inv.State != flows.StateNotified || !historyHas(inv, "invited", "as inviter "+inviterOID) {
			t.Errorf("line %d after reconnecting: %s", r.Line, inv.State)
		}
	}
	if len(e.dir.Users()) != 2 {
		t.Errorf("%d guests, want 2", len(e.dir.Users()))
	}
	again := e.bulkRun(t, bulkTwo, flows.BulkOptions{})
	for _, r := range again {
		if r.Outcome != flows.BulkInvited || !r.Earlier {
			t.Errorf("re-run line %d: %s %q", r.Line, r.Outcome, r.Reason)
		}
	}
}

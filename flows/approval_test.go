package flows_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

// approvalEnv is an env whose policy sends unknown domains for approval by
// UAPPR or USEC, and denies gmail.com.
func approvalEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	p := e.svc.Policy()
	p.Approvers = []string{"UAPPR", "USEC"}
	p.Domains = flows.DomainPolicy{Default: flows.DomainApprove, Rules: []flows.DomainRule{
		{Domain: "gmail.com", Action: flows.DomainDeny, Reason: "No personal addresses."},
		{Domain: "fabrikam.com", Action: flows.DomainAllow},
	}}
	e.svc.SetPolicy(p)
	return e
}

func (e *env) requestApproval(t *testing.T) *flows.Invitation {
	t.Helper()
	r := request()
	r.Email, r.Justification = "bob@unknown.org", "Bob reviews our Q4 contracts."
	inv, err := e.svc.Submit(t.Context(), "V-approval", inviter, r)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	e.svc.Wait()
	return e.load(t, inv.ID)
}

func TestApprovalRequested(t *testing.T) {
	e := approvalEnv(t)
	r := request()
	r.Email = "bob@unknown.org"
	_, err := e.svc.Submit(t.Context(), "V0", inviter, r)
	var fe flows.FieldErrors
	if !errors.As(err, &fe) || fe[flows.FieldJustification] == "" {
		t.Fatalf("Submit without a justification = %v, want an error next to the justification", err)
	}
	r.Email = "bob@gmail.com"
	if _, err := e.svc.Submit(t.Context(), "V1", inviter, r); !errors.As(err, &fe) || fe[flows.FieldEmail] != "Invitations to gmail.com are not allowed. No personal addresses." {
		t.Errorf("denied domain: %v", err)
	}
	inv := e.requestApproval(t)
	if inv.State != flows.StateAwaitingApproval || !slices.Equal(inv.Approval.Approvers, []string{"UAPPR", "USEC"}) {
		t.Fatalf("invitation = %s %+v", inv.State, inv.Approval)
	}
	if n := e.dir.Count("Invite") + e.dir.Count("FindUsers"); n != 0 {
		t.Errorf("%d directory calls before approval", n)
	}
	var to []string
	for _, n := range e.note.Notices() {
		if n.Kind == flows.NoticeApprovalRequested {
			to = append(to, n.To)
		}
	}
	if !slices.Equal(to, []string{"UAPPR", "USEC"}) || len(inv.Approval.Messages) != 2 || len(inv.Outbox) != 0 {
		t.Errorf("requests sent to %v, messages %v, outbox %v; want a DM to each approver, recorded", to, inv.Approval.Messages, inv.Outbox)
	}
}

func TestApprovalToChannel(t *testing.T) {
	e := approvalEnv(t)
	p := e.svc.Policy()
	p.ApprovalChannel = "C0APPROVALS"
	e.svc.SetPolicy(p)
	inv := e.requestApproval(t)
	if len(inv.Approval.Messages) != 1 || inv.Approval.Messages[0].To != "C0APPROVALS" {
		t.Errorf("messages = %+v, want one in the approvals channel", inv.Approval.Messages)
	}
}

func TestApproveRunsTheInvitation(t *testing.T) {
	e := approvalEnv(t)
	inv := e.requestApproval(t)
	approver := flows.Inviter{TeamID: "T1", UserID: "UAPPR"}
	if _, err := e.svc.Decide(t.Context(), inv.ID, inviter, true, ""); !errors.Is(err, flows.ErrNotAuthorized) {
		t.Errorf("the requester approving their own request: %v, want ErrNotAuthorized", err)
	}
	if _, err := e.svc.Decide(t.Context(), inv.ID, flows.Inviter{TeamID: "T1", UserID: "UMALLORY"}, true, ""); !errors.Is(err, flows.ErrNotAuthorized) {
		t.Errorf("a non-approver approving: %v, want ErrNotAuthorized", err)
	}
	if _, err := e.svc.Decide(t.Context(), inv.ID, approver, true, ""); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	got := e.load(t, inv.ID)
	if got.State != flows.StateNotified || got.Approval.Decision != flows.DecisionApproved || got.Approval.DecidedBy != "UAPPR" {
		t.Errorf("after approval: %s %+v (%+v)", got.State, got.Approval, got.Failure)
	}
	if _, err := e.svc.Decide(t.Context(), inv.ID, flows.Inviter{UserID: "USEC"}, false, "no"); !errors.Is(err, flows.ErrWrongState) {
		t.Errorf("a second decision: %v, want ErrWrongState", err)
	}
	refused := 0
	for _, ev := range got.History {
		if ev.Action == "decision refused" {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("%d refused attempts in the audit trail, want 2", refused)
	}
	if n := e.note.Count(flows.NoticeApprovalDecided, inv.ID); n != 1 {
		t.Errorf("decision notices = %d, want 1", n)
	}
}

func TestDenyEndsTheInvitation(t *testing.T) {
	e := approvalEnv(t)
	inv := e.requestApproval(t)
	if _, err := e.svc.Decide(t.Context(), inv.ID, flows.Inviter{UserID: "USEC"}, false, "Not a current supplier."); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	got := e.load(t, inv.ID)
	if got.State != flows.StateFailed || got.Failure.Code != flows.FailDenied || got.Failure.Message != "Not a current supplier." {
		t.Errorf("after deny: %s %+v", got.State, got.Failure)
	}
	if e.dir.Count("Invite") != 0 {
		t.Error("a denied request reached Graph")
	}
}

func TestApprovalAfterRestartAndPolicyChange(t *testing.T) {
	e := approvalEnv(t)
	inv := e.requestApproval(t)
	policy := e.svc.Policy()
	e.svc.Close()
	e.svc = e.start(t)
	policy.Approvers = []string{"USEC"} // UAPPR is no longer an approver
	e.svc.SetPolicy(policy)
	if _, err := e.svc.Decide(t.Context(), inv.ID, flows.Inviter{UserID: "UAPPR"}, true, ""); !errors.Is(err, flows.ErrNotAuthorized) {
		t.Errorf("a removed approver approving: %v, want ErrNotAuthorized", err)
	}
	if _, err := e.svc.Decide(t.Context(), inv.ID, flows.Inviter{UserID: "USEC"}, true, ""); err != nil {
		t.Fatalf("approval after a restart: %v", err)
	}
	e.svc.Wait()
	if got := e.load(t, inv.ID); got.State != flows.StateNotified {
		t.Errorf("state = %s, want notified", got.State)
	}
}

func TestApprovalExpires(t *testing.T) {
	e := approvalEnv(t)
	inv := e.requestApproval(t)
	e.advance(flows.DefaultApprovalTTL + time.Minute)
	if _, err := e.svc.Decide(t.Context(), inv.ID, flows.Inviter{UserID: "USEC"}, true, ""); !errors.Is(err, flows.ErrExpired) {
		t.Errorf("deciding after expiry: %v, want ErrExpired", err)
	}
	e.track(t)
	got := e.load(t, inv.ID)
	if got.State != flows.StateFailed || got.Failure.Code != flows.FailApprovalExpired || got.Approval.Decision != flows.DecisionExpired {
		t.Errorf("after expiry: %s %+v", got.State, got.Failure)
	}
	if n := e.note.Count(flows.NoticeApprovalDecided, inv.ID); n != 1 {
		t.Errorf("expiry notices = %d, want 1", n)
	}
}

func TestSponsorRecordedAndSetInEntra(t *testing.T) {
	e := &env{store: flowstest.NewStore(), dir: flowstest.NewDirectory(), note: &flowstest.Notifier{},
		people: flowstest.People{inviter.UserID: "ann@contoso.com"}}
	e.svc = e.start(t)
	e.dir.AddUser(flows.DirectoryUser{ID: "u-ann", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com", UserType: flows.UserTypeMember})
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateNotified || inv.Sponsor == nil || !inv.Sponsor.InEntra || inv.Sponsor.ObjectID != "u-ann" {
		t.Fatalf("invitation = %s, sponsor %+v", inv.State, inv.Sponsor)
	}
	if got := e.dir.Sponsors(inv.ObjectID); !slices.Equal(got, []string{"u-ann"}) {
		t.Errorf("Entra sponsors = %v, want the inviter's account", got)
	}
	if g, _ := e.store.Guest(t.Context(), inv.ObjectID); g == nil || g.Sponsor == nil || g.Sponsor.SlackUser != inviter.UserID {
		t.Errorf("guest's sponsor = %+v", g)
	}
}

func TestSponsorWithoutEntraAccountIsNotedNotFatal(t *testing.T) {
	e := &env{store: flowstest.NewStore(), dir: flowstest.NewDirectory(), note: &flowstest.Notifier{},
		people: flowstest.People{inviter.UserID: "ann@contoso.com"}}
	e.svc = e.start(t)
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateNotified || inv.Sponsor == nil || inv.Sponsor.InEntra || !strings.Contains(inv.Sponsor.Note, "no internal Entra account") {
		t.Fatalf("invitation = %s, sponsor %+v", inv.State, inv.Sponsor)
	}
	if e.dir.Count("AddSponsor") != 0 {
		t.Error("a sponsor was added without an Entra account to add")
	}
}

// POST /invitations is paced under Graph's per-tenant limit: with a limit
// of 2 per hour, a third invitation waits (and is resumed after a stop).
func TestInvitationsArePacedUnderGraphsLimit(t *testing.T) {
	dir, note, store := flowstest.NewDirectory(), &flowstest.Notifier{}, flowstest.NewStore()
	svc := flows.New(flows.Config{Directory: dir, Store: store, Notifier: note, PollInterval: -1,
		Policy:      flows.Policy{DefaultRedirectURL: "https://myapplications.microsoft.com"},
		InviteLimit: 2, InviteWindow: time.Hour})
	if _, err := svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"a@fabrikam.com", "b@fabrikam.com", "c@fabrikam.com"} {
		if _, err := svc.Submit(t.Context(), "V"+email, inviter, flows.Request{Email: email}); err != nil {
			t.Fatal(err)
		}
	}
	if err := note.WaitFor(t.Context(), func(ns []flows.Notice) bool {
		done, inviting := 0, 0
		for _, n := range ns {
			switch {
			case n.Kind == flows.NoticeDone:
				done++
			case n.Kind == flows.NoticeProgress && n.Invitation.State == flows.StateInviting:
				inviting++
			}
		}
		return done == 2 && inviting == 3 // two invited; the third reached the window
	}); err != nil {
		t.Fatal(err)
	}
	svc.Close()
	if n := dir.Count("Invite"); n != 2 {
		t.Errorf("%d POSTs within the window, want 2", n)
	}
	states := map[flows.State]int{}
	invs, _ := store.Invitations(t.Context(), flows.InvitationFilter{})
	for _, inv := range invs {
		states[inv.State]++
	}
	if states[flows.StateNotified] != 2 || states[flows.StateInviting] != 1 {
		t.Errorf("states = %v, want 2 notified and 1 inviting (waiting for the window; resumed after a restart)", states)
	}
}

// Each approval stage needs its own approver: the approver of one group
// cannot approve another group's, nor the domain's.
func TestApprovalStages(t *testing.T) {
	e := approvalEnv(t)
	p := e.svc.Policy()
	p.Groups = []flows.Group{{Name: "Portal", ID: "g1", Approvers: []string{"UPORTAL"}}, {Name: "Wiki", ID: "g2", Approvers: []string{"UWIKI"}}}
	e.svc.SetPolicy(p)
	r := request() // asks for g1 and g2, at a domain that needs approval too
	r.Email, r.Justification = "bob@unknown.org", "needed"
	inv, err := e.svc.Submit(t.Context(), "V-stages", inviter, r)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	for _, who := range []string{"UPORTAL", "UAPPR"} {
		if _, err := e.svc.Decide(t.Context(), inv.ID, flows.Inviter{UserID: who}, true, ""); err != nil {
			t.Fatalf("%s approving: %v", who, err)
		}
		e.svc.Wait()
		if got := e.load(t, inv.ID); got.State != flows.StateAwaitingApproval {
			t.Fatalf("after %s's approval the request is %s, want still waiting (Wiki's approver has not approved)", who, got.State)
		}
	}
	if _, err := e.svc.Decide(t.Context(), inv.ID, flows.Inviter{UserID: "UPORTAL"}, true, ""); !errors.Is(err, flows.ErrNotAuthorized) {
		t.Errorf("Portal's approver approving again: %v, want ErrNotAuthorized (nothing of theirs waits)", err)
	}
	if _, err := e.svc.Decide(t.Context(), inv.ID, flows.Inviter{UserID: "UWIKI"}, true, ""); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	got := e.load(t, inv.ID)
	if got.State != flows.StateNotified || len(got.Approval.Approved) != 3 {
		t.Errorf("after every stage: %s, approved %v", got.State, got.Approval.Approved)
	}
}

// A request the policy refuses by the time someone decides is ended with
// the policy's reason; one that no longer needs approval goes ahead.
func TestApprovalUnderChangedPolicy(t *testing.T) {
	e := approvalEnv(t)
	denied := e.requestApproval(t)
	p := e.svc.Policy()
	p.Domains.Rules = append(p.Domains.Rules, flows.DomainRule{Domain: "unknown.org", Action: flows.DomainDeny, Reason: "Blocked since Monday."})
	e.svc.SetPolicy(p)
	if _, err := e.svc.Decide(t.Context(), denied.ID, flows.Inviter{UserID: "USEC"}, true, ""); !errors.Is(err, flows.ErrPolicyDenied) {
		t.Errorf("deciding a request the policy now denies: %v, want ErrPolicyDenied", err)
	}
	e.svc.Wait()
	if got := e.load(t, denied.ID); got.State != flows.StateFailed || !strings.Contains(got.Failure.Message, "Blocked since Monday.") {
		t.Errorf("record = %s %+v", got.State, got.Failure)
	}
}

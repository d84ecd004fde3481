package main

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// runStep runs a workflow with the step as requester, with the given
// inputs (requester is set from who), and returns the execution.
func (h *harness) runStep(t *testing.T, who string, inputs map[string]any) slackfake.Execution {
	t.Helper()
	in := map[string]any{bot.StepRequester: slackfake.UserContext(who)}
	maps.Copy(in, inputs)
	x, r, err := h.player.FunctionExecuted(h.ctx, bot.FunctionInvite, in)
	if err != nil || r.Status != http.StatusOK || len(r.Body) != 0 {
		t.Fatalf("function_executed: %v %d %s", err, r.Status, r.Body)
	}
	return x
}

// completion waits for the step's completion, lets every background run
// end, and checks it was completed exactly once.
func (h *harness) completion(t *testing.T, x slackfake.Execution) slackfake.Completion {
	t.Helper()
	if err := h.slack.WaitFor(h.ctx, func() bool { return len(h.slack.Completions(x.ID)) > 0 }); err != nil {
		t.Fatalf("the step was never completed: %v\n%s", err, h.logs.String())
	}
	h.app.svc.Wait()
	cs := h.slack.Completions(x.ID)
	if len(cs) != 1 {
		t.Fatalf("%d completions, want 1: %+v", len(cs), cs)
	}
	for _, c := range h.slack.Calls("") {
		if strings.HasPrefix(c.Method, "functions.") && c.Error != "" {
			t.Errorf("%s answered %s", c.Method, c.Error)
		}
	}
	return cs[0]
}

// stepRecord returns the invitation of execution x.
func (h *harness) stepRecord(t *testing.T, x slackfake.Execution) *flows.Invitation {
	t.Helper()
	invs, err := h.app.db.Invitations(h.ctx, flows.InvitationFilter{OriginKind: flows.OriginWorkflow, OriginKey: x.ID})
	if err != nil || len(invs) != 1 {
		t.Fatalf("records of %s: %v %v", x.ID, invs, err)
	}
	return invs[0]
}

func TestE2EWorkflowStep(t *testing.T) { bothTransports(t, testWorkflowStep) }

// A workflow invites a new guest: the policy's groups by name, the redeem
// link by DM to the requester, the outputs to the workflow; the same event
// three times does it once.
func testWorkflowStep(t *testing.T, h *harness) {
	x, err := h.slack.StartExecution(bot.FunctionInvite, map[string]any{
		bot.StepRequester: slackfake.UserContext(ann), bot.StepEmail: "bob@fabrikam.com", bot.StepDisplayName: "Bob Smith",
		bot.StepGroups: "partner portal users", bot.StepDelivery: "slack_link", bot.StepMessage: "Welcome",
	})
	if err != nil {
		t.Fatal(err)
	}
	cb := h.player.EventCallback(h.player.FunctionExecutedEvent(x))
	for attempt := range 3 { // Slack's retries repeat the event
		if r, err := h.player.SendEvent(h.ctx, cb, attempt, "http_timeout"); err != nil || r.Status != http.StatusOK {
			t.Fatalf("delivery %d: %v %d %s", attempt, err, r.Status, r.Body)
		}
	}
	c := h.completion(t, x)
	users := h.tenant.Users()
	var bob graphfake.User
	for _, u := range users {
		if u.Mail == "bob@fabrikam.com" {
			bob = u
		}
	}
	if !c.Success || c.Outputs[bot.StepObjectID] != bob.ID || bob.ID == "" || c.Outputs[bot.StepEmail] != "bob@fabrikam.com" ||
		c.Outputs[bot.StepOutcome] != "invited" || len(c.Outputs) != 3 {
		t.Errorf("completion = %+v, guest %+v", c, bob)
	}
	if n := len(h.tenant.Invitations()); n != 1 {
		t.Errorf("%d invitations POSTed for one step delivered three times", n)
	}
	if !slices.Contains(h.tenant.GroupMembers(emuPortal), bob.ID) {
		t.Error("the guest is not in the group named in the groups input")
	}
	rec := h.stepRecord(t, x)
	if rec.State != flows.StateNotified || rec.Inviter.UserID != ann || rec.Origin.Name != x.WorkflowExecutionID || len(rec.Outbox) != 0 {
		t.Errorf("record: %s %+v outbox %v", rec.State, rec.Origin, rec.Outbox)
	}
	dms := h.dmsTo(ann)
	if len(dms) != 1 || !strings.Contains(string(dms[0].Blocks), "redeem") {
		t.Fatalf("DMs to the requester: %d, want the redeem link once", len(dms))
	}
	for _, v := range c.Outputs {
		if strings.Contains(fmt.Sprint(v), "redeem") {
			t.Error("an output carries the redeem link")
		}
	}
	if home := h.openHome(t, ann); !strings.Contains(home, "workflow") {
		t.Errorf("the Home tab does not say where the invitation came from:\n%s", home)
	}
}

// An address with one guest account is adopted (outcome existing, no
// invitation sent); one with an internal account fails the step, naming
// what matched.
func TestE2EWorkflowStepExistingAccount(t *testing.T) {
	h := start(t)
	carol := h.tenant.AddUser(graphfake.User{DisplayName: "Carol", Mail: "carol@litware.com", UserType: "Guest",
		ExternalUserState: "Accepted", OtherMails: []string{"carol@litware.com"}})
	x := h.runStep(t, ann, map[string]any{bot.StepEmail: "carol@litware.com", bot.StepGroups: emuPortal})
	c := h.completion(t, x)
	if !c.Success || c.Outputs[bot.StepObjectID] != carol.ID || c.Outputs[bot.StepOutcome] != "existing" || c.Outputs[bot.StepEmail] != "carol@litware.com" {
		t.Errorf("completion = %+v", c)
	}
	if n := len(h.tenant.Invitations()); n != 0 {
		t.Errorf("%d invitations POSTed for an existing guest", n)
	}
	if !slices.Contains(h.tenant.GroupMembers(emuPortal), carol.ID) {
		t.Error("the existing guest was not added to the group")
	}

	h.tenant.AddUser(graphfake.User{DisplayName: "Dave", Mail: "dave@litware.com", UserType: "Member", OtherMails: []string{"dave@litware.com"}})
	x = h.runStep(t, ann, map[string]any{bot.StepEmail: "dave@litware.com"})
	c = h.completion(t, x)
	if c.Success || !strings.Contains(c.Error, "member") || !strings.Contains(c.Error, "1 existing account") {
		t.Errorf("completion = %+v, want an error naming the internal match", c)
	}
	if rec := h.stepRecord(t, x); rec.State != flows.StateFailed || rec.Failure.Code != flows.FailNeedsPick {
		t.Errorf("record: %s %+v", rec.State, rec.Failure)
	}
}

// The policy applies to the requester: a denied domain, an input the
// policy does not offer, a requester who may not invite, and a missing
// requester each fail the step with the reason, send nothing to Entra,
// and are audited.
func TestE2EWorkflowStepRefused(t *testing.T) {
	h := start(t)
	h.governedPolicy(t, approverA)
	for _, c := range []struct {
		name, who string
		inputs    map[string]any
		want      string
	}{
		{"denied domain", ann, map[string]any{bot.StepEmail: "bob@gmail.com"}, "Use a company address."},
		{"own domain", ann, map[string]any{bot.StepEmail: "eve@contoso.com"}, "own domains"},
		{"group not offered", ann, map[string]any{bot.StepEmail: "bob@fabrikam.com", bot.StepGroups: "Partner portal users; Finance"}, `group "Finance" is not one the policy offers`},
		{"bad delivery", ann, map[string]any{bot.StepEmail: "bob@fabrikam.com", bot.StepDelivery: "carrier pigeon"}, "delivery input"},
		{"approval without justification", ann, map[string]any{bot.StepEmail: "bob@unknown.org"}, "say why"},
	} {
		x := h.runStep(t, c.who, c.inputs)
		got := h.completion(t, x)
		if got.Success || !strings.Contains(got.Error, c.want) {
			t.Errorf("%s: completion %+v, want an error with %q", c.name, got, c.want)
		}
		rec := h.stepRecord(t, x)
		if rec.State != flows.StateFailed || rec.Failure.Code != flows.FailRefused || !strings.Contains(rec.History[0].Detail, "workflow="+x.WorkflowExecutionID) {
			t.Errorf("%s: record %s %+v %+v", c.name, rec.State, rec.Failure, rec.History)
		}
	}
	if n := len(h.tenant.Invitations()); n != 0 {
		t.Errorf("%d invitations POSTed for refused steps", n)
	}
	if dms := h.dmsTo(ann); len(dms) != 5 || !strings.HasPrefix(dms[0].Text, "Could not invite") {
		t.Errorf("the requester got %d DMs, want one per refusal", len(dms))
	}

	// Only the listed inviters may invite; the step's requester is checked,
	// not whoever built the workflow.
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("admins: ["+emuAdmin+"]\ninviters: ["+emuAdmin+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cfg.PolicyPath = path
	h.reloadPolicy(t)
	x := h.runStep(t, ann, map[string]any{bot.StepEmail: "bob@fabrikam.com"})
	if c := h.completion(t, x); c.Success || !strings.Contains(c.Error, "not among the people allowed to invite") {
		t.Errorf("requester who may not invite: %+v", c)
	}
	x, r, err := h.player.FunctionExecuted(h.ctx, bot.FunctionInvite, map[string]any{bot.StepRequester: map[string]any{}, bot.StepEmail: "bob@fabrikam.com"})
	if err != nil || r.Status != http.StatusOK {
		t.Fatal(err, r.Status)
	}
	if c := h.completion(t, x); c.Success || !strings.Contains(c.Error, "no requester") {
		t.Errorf("no requester: %+v", c)
	}
	if n := len(h.tenant.Invitations()); n != 0 {
		t.Errorf("%d invitations POSTed for refused steps", n)
	}
}

func TestE2EWorkflowStepApproval(t *testing.T) { bothTransports(t, testWorkflowStepApproval) }

// An approval keeps the step in progress until an approver decides: an
// approval completes it with the outputs, a denial with the reason.
func testWorkflowStepApproval(t *testing.T, h *harness) {
	h.governedPolicy(t, approverA)
	approve := h.runStep(t, ann, map[string]any{bot.StepEmail: "bob@unknown.org", bot.StepJustification: "Audits our books"})
	deny := h.runStep(t, ann, map[string]any{bot.StepEmail: "carl@unknown.org", bot.StepJustification: "Sells us things"})
	h.app.svc.Wait()
	for _, x := range []slackfake.Execution{approve, deny} {
		if rec := h.stepRecord(t, x); rec.State != flows.StateAwaitingApproval {
			t.Fatalf("record %s, want awaiting approval", rec.State)
		}
	}
	if n := len(h.slack.Completions("")); n != 0 {
		t.Fatalf("%d completions while awaiting approval", n)
	}
	rec := h.stepRecord(t, approve)
	if r, err := h.player.Press(h.ctx, approverA, slackfake.MessageContainer(h.approvalDM(t, approverA, rec.ID)), bot.ActionApprove, rec.ID, ""); err != nil || r.Status != http.StatusOK {
		t.Fatalf("approve: %v %d", err, r.Status)
	}
	c := h.completion(t, approve)
	if !c.Success || c.Outputs[bot.StepOutcome] != "invited" || c.Outputs[bot.StepObjectID] == "" {
		t.Errorf("approved: %+v", c)
	}
	rec = h.stepRecord(t, deny)
	_, view, err := h.player.PressOpen(h.ctx, approverA, slackfake.MessageContainer(h.approvalDM(t, approverA, rec.ID)), bot.ActionDeny, rec.ID, "")
	if err != nil || view == "" {
		t.Fatalf("deny: %v", err)
	}
	if ack := h.submit2(t, approverA, view, map[string]map[string]any{bot.BlockReason: {bot.BlockReason: slackfake.Text("Not a supplier.")}}); ack["response_action"] != "clear" {
		t.Fatalf("deny: %v", ack)
	}
	c = h.completion(t, deny)
	if c.Success || !strings.Contains(c.Error, "denied") || !strings.Contains(c.Error, "Not a supplier.") {
		t.Errorf("denied: %+v", c)
	}
	if n := len(h.tenant.Invitations()); n != 1 {
		t.Errorf("%d invitations POSTed, want the approved one", n)
	}
}

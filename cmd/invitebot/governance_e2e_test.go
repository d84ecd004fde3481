package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/slackfake"
)

const (
	approverA = "U0APPROVERA"
	approverB = "U0APPROVERB"
)

// governedPolicy writes a policy file (unknown domains need approval by A or
// B, gmail.com is denied, fabrikam.com is auto-approved), points the app at
// it and reloads it as SIGHUP would.
func (h *harness) governedPolicy(t *testing.T, approvers string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	yaml := `admins: [` + emuAdmin + `]
groups:
  - {name: Partner portal users, id: ` + emuPortal + `}
domains:
  default: approve
  rules:
    - {domain: fabrikam.com, action: auto_approve}
    - {domain: gmail.com, action: deny, reason: "Use a company address."}
approvals:
  approvers: [` + approvers + `]
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cfg.PolicyPath = path
	h.reloadPolicy(t)
}

// reloadPolicy sends SIGHUP's reload to the running app and waits for it.
func (h *harness) reloadPolicy(t *testing.T) {
	t.Helper()
	if h.app.reloaded == nil {
		h.app.reloaded = make(chan error, 1)
	}
	h.app.reload <- os.Interrupt // any signal value: serve reloads on each
	if err := <-h.app.reloaded; err != nil {
		t.Fatalf("reload: %v", err)
	}
}

// askApproval has Ann request an invitation of a guest at an unknown
// domain and returns the record, awaiting approval.
func (h *harness) askApproval(t *testing.T, email string) *flows.Invitation {
	t.Helper()
	view := h.open(t, "")
	raw, _ := h.slack.View(view)
	if !strings.Contains(string(raw), `"block_id":"justification"`) {
		t.Fatalf("the dialog has no justification field:\n%s", raw)
	}
	v := inviteValues(email, "Bob", "slack_link")
	ack := h.submit(t, view, v)
	errs, _ := ack["errors"].(map[string]any)
	if msg, _ := errs[bot.BlockJustification].(string); !strings.Contains(msg, "say why") {
		t.Fatalf("submission without a justification: %v, want an error next to it", ack)
	}
	v[bot.BlockJustification] = map[string]any{bot.BlockJustification: slackfake.Text("Bob audits our <!channel> books.")}
	if ack := h.submit(t, view, v); ack["response_action"] != "update" {
		t.Fatalf("ack = %v", ack)
	}
	h.app.svc.Wait()
	if !strings.Contains(h.viewText(view), "Waiting for approval") {
		t.Errorf("the dialog does not say it waits for approval:\n%s", h.viewText(view))
	}
	invs, _ := h.app.db.Invitations(h.ctx, flows.InvitationFilter{Emails: []string{email}})
	if len(invs) != 1 || invs[0].State != flows.StateAwaitingApproval {
		t.Fatalf("records = %v", invs)
	}
	return invs[0]
}

// approvalDM returns the approval request DMed to approver.
func (h *harness) approvalDM(t *testing.T, approver, id string) slackfake.Message {
	t.Helper()
	for _, m := range h.dmsTo(approver) {
		if strings.Contains(string(m.Blocks), id) && strings.Contains(string(m.Blocks), bot.ActionApprove) {
			return m
		}
	}
	t.Fatalf("no approval request for %s in %s's DMs", id, approver)
	return slackfake.Message{}
}

func TestE2EApprovalApproved(t *testing.T) { bothTransports(t, testApprovalApproved) }

func testApprovalApproved(t *testing.T, h *harness) {
	h.governedPolicy(t, approverA+", "+approverB)
	inv := h.askApproval(t, "bob@unknown.org")
	if n := len(h.tenant.Invitations()); n != 0 {
		t.Fatalf("%d invitations POSTed before approval", n)
	}
	req := h.approvalDM(t, approverA, inv.ID)
	reqB := h.approvalDM(t, approverB, inv.ID)
	if text := render(req.Blocks); !strings.Contains(text, "&lt;!channel&gt;") || strings.Contains(string(req.Blocks), "<!channel>") {
		t.Errorf("the justification is not escaped in the request:\n%s", text)
	}
	// Mallory forges a press of the Approve button: refused and audited.
	if r, err := h.player.Press(h.ctx, mallory, slackfake.MessageContainer(req), bot.ActionApprove, inv.ID, ""); err != nil || r.Status != http.StatusOK {
		t.Fatalf("press: %v %d", err, r.Status)
	}
	if rec := h.recordOf(t, inv.ID); rec.State != flows.StateAwaitingApproval || rec.History[len(rec.History)-1].Action != "decision refused" {
		t.Fatalf("a non-approver's press: %s, last event %+v", rec.State, rec.History[len(rec.History)-1])
	}
	if r, err := h.player.Press(h.ctx, approverA, slackfake.MessageContainer(req), bot.ActionApprove, inv.ID, ""); err != nil || r.Status != http.StatusOK {
		t.Fatalf("press: %v %d", err, r.Status)
	}
	h.app.svc.Wait()
	rec := h.recordOf(t, inv.ID)
	if rec.State != flows.StateNotified || rec.Approval.DecidedBy != approverA || len(h.tenant.Invitations()) != 1 {
		t.Fatalf("after approval: %s %+v, %d invitations", rec.State, rec.Approval, len(h.tenant.Invitations()))
	}
	// Both requests now show the decision, without buttons.
	for _, m := range []slackfake.Message{req, reqB} {
		m = h.latestVersion(m)
		if strings.Contains(string(m.Blocks), bot.ActionApprove) || !strings.Contains(render(m.Blocks), "Approved* by <@"+approverA+">") {
			t.Errorf("%s's request after the decision:\n%s", m.Channel, render(m.Blocks))
		}
	}
	var told bool
	for _, m := range h.dmsTo(ann) {
		told = told || strings.Contains(m.Text, "<@"+approverA+"> approved your invitation")
	}
	if !told {
		t.Error("Ann was not told of the approval")
	}
	// A second decision is refused.
	if r, _ := h.player.Action(h.ctx, approverB, slackfake.MessageContainer(req),
		map[string]any{"type": "button", "action_id": bot.ActionApprove, "block_id": "approval", "value": inv.ID}); r.Status != http.StatusOK {
		t.Fatalf("press: %d", r.Status)
	}
	if !strings.Contains(strings.Join(h.ephemeralsTo(approverB), "\n"), "already been decided") {
		t.Errorf("B's late press: %q", h.ephemeralsTo(approverB))
	}
}

func TestE2EApprovalDeniedWithReason(t *testing.T) {
	h := start(t)
	h.governedPolicy(t, approverA)
	inv := h.askApproval(t, "bob@unknown.org")
	req := h.approvalDM(t, approverA, inv.ID)
	_, view, err := h.player.PressOpen(h.ctx, approverA, slackfake.MessageContainer(req), bot.ActionDeny, inv.ID, "")
	if err != nil || view == "" || h.viewCallback(view) != bot.CallbackDeny {
		t.Fatalf("deny opened %q (%v), want the reason dialog", view, err)
	}
	if ack := h.submit2(t, approverA, view, map[string]map[string]any{bot.BlockReason: {bot.BlockReason: slackfake.Text(" ")}}); ack["response_action"] != "errors" {
		t.Errorf("deny without a reason: %v", ack)
	}
	if ack := h.submit2(t, approverA, view, map[string]map[string]any{bot.BlockReason: {bot.BlockReason: slackfake.Text("Not a supplier & never was.")}}); ack["response_action"] != "clear" {
		t.Fatalf("deny: %v", ack)
	}
	h.app.svc.Wait()
	rec := h.recordOf(t, inv.ID)
	if rec.State != flows.StateFailed || rec.Failure.Code != flows.FailDenied || len(h.tenant.Invitations()) != 0 {
		t.Fatalf("after deny: %s %+v", rec.State, rec.Failure)
	}
	var told bool
	for _, m := range h.dmsTo(ann) {
		told = told || strings.Contains(m.Text, "denied your invitation") && strings.Contains(m.Text, "Not a supplier &amp; never was.")
	}
	if !told {
		t.Error("Ann was not told of the denial and its reason (escaped)")
	}
}

func TestE2EApprovalSelfApprovalRefused(t *testing.T) {
	h := start(t)
	h.governedPolicy(t, ann+", "+approverA) // Ann is an approver, but not of her own requests
	inv := h.askApproval(t, "bob@unknown.org")
	if len(h.dmsTo(ann)) != 0 && strings.Contains(string(h.dmsTo(ann)[0].Blocks), bot.ActionApprove) {
		t.Error("Ann was asked to approve her own request")
	}
	req := h.approvalDM(t, approverA, inv.ID)
	if r, err := h.player.Action(h.ctx, ann, slackfake.MessageContainer(req),
		map[string]any{"type": "button", "action_id": bot.ActionApprove, "block_id": "approval", "value": inv.ID}); err != nil || r.Status != http.StatusOK {
		t.Fatalf("press: %v", err)
	}
	if rec := h.recordOf(t, inv.ID); rec.State != flows.StateAwaitingApproval {
		t.Fatalf("Ann approved her own request: %s", rec.State)
	}
	if !strings.Contains(strings.Join(h.ephemeralsTo(ann), "\n"), "not an approver of this request") {
		t.Errorf("Ann's replies: %q", h.ephemeralsTo(ann))
	}
}

func TestE2EApprovalAfterRestartAndApproverRemoved(t *testing.T) {
	h := start(t)
	h.governedPolicy(t, approverA+", "+approverB)
	inv := h.askApproval(t, "bob@unknown.org")
	req := h.approvalDM(t, approverA, inv.ID)
	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	if err := h.startApp(); err != nil {
		t.Fatal(err)
	}
	h.governedPolicy(t, approverB) // A was removed from the policy meanwhile
	if r, _ := h.player.Press(h.ctx, approverA, slackfake.MessageContainer(req), bot.ActionApprove, inv.ID, ""); r.Status != http.StatusOK {
		t.Fatalf("press: %d", r.Status)
	}
	if rec := h.recordOf(t, inv.ID); rec.State != flows.StateAwaitingApproval {
		t.Fatalf("a removed approver approved: %s", rec.State)
	}
	if r, _ := h.player.Press(h.ctx, approverB, slackfake.MessageContainer(h.approvalDM(t, approverB, inv.ID)), bot.ActionApprove, inv.ID, ""); r.Status != http.StatusOK {
		t.Fatalf("press: %d", r.Status)
	}
	h.app.svc.Wait()
	if rec := h.recordOf(t, inv.ID); rec.State != flows.StateNotified {
		t.Errorf("approval after a restart: %s (%+v)", rec.State, rec.Failure)
	}
}

func TestE2EDomainRules(t *testing.T) {
	h := start(t)
	h.governedPolicy(t, approverA)
	view := h.open(t, "")
	ack := h.submit(t, view, inviteValues("bob@gmail.com", "Bob", "slack_link"))
	errs, _ := ack["errors"].(map[string]any)
	if msg, _ := errs["email"].(string); msg != "Invitations to gmail.com are not allowed. Use a company address." {
		t.Errorf("denied domain: %v", ack)
	}
	// fabrikam.com is auto-approved: no justification, no approver.
	h.inviteGuest(t, "carol@fabrikam.com", "Carol")
	if len(h.dmsTo(approverA)) != 0 {
		t.Error("an auto-approved domain went to the approver")
	}
	if n := len(h.tenant.Invitations()); n != 1 {
		t.Errorf("%d invitations, want 1", n)
	}
}

func TestE2EInvitersOnlyAndReloadRefusesBadFile(t *testing.T) {
	h := start(t)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("inviters: ["+ann+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cfg.PolicyPath = path
	h.reloadPolicy(t)
	r, view, err := h.player.Command(h.ctx, mallory, bot.Command, "")
	if err != nil || view != "" || !strings.Contains(string(r.Body), "not among the people allowed") {
		t.Errorf("a non-inviter's command: %v, view %q, %s", err, view, r.Body)
	}
	// A broken file is refused; the policy in force stays.
	if err := os.WriteFile(path, []byte("inviters: [bob]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.app.reload <- os.Interrupt
	if err := <-h.app.reloaded; err == nil || !strings.Contains(err.Error(), "inviters[0]") {
		t.Errorf("reload of a broken file: %v", err)
	}
	if p := h.app.svc.Policy(); len(p.Inviters) != 1 || p.Inviters[0] != ann {
		t.Errorf("policy after a refused reload = %+v", p.Inviters)
	}
	h.open(t, "") // Ann still may
}

// submit2 submits view as user.
func (h *harness) submit2(t *testing.T, user, view string, values map[string]map[string]any) map[string]any {
	t.Helper()
	r, err := h.player.Submit(h.ctx, user, view, values)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("submit: %v %d %s", err, r.Status, r.Body)
	}
	return r.JSON()
}

// The inviter becomes the guest's sponsor in Entra (mapped by their Slack
// email to their internal account) and in the store; without an Entra
// account it is noted and the invitation goes on.
func TestE2ESponsor(t *testing.T) {
	h := start(t)
	h.slack.AddUser(ann, "ann@contoso.com", "Ann Inviter")
	annEntra := h.tenant.AddUser(graphfake.User{DisplayName: "Ann", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com", UserType: "Member"})
	inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob")
	if got := h.tenant.Sponsors(inv.ObjectID); len(got) != 1 || got[0] != annEntra.ID {
		t.Errorf("Entra sponsors of the guest = %v, want Ann's account %s", got, annEntra.ID)
	}
	g, err := h.app.db.Guest(h.ctx, inv.ObjectID)
	if err != nil || g.Sponsor == nil || !g.Sponsor.InEntra || g.Sponsor.SlackUser != ann {
		t.Errorf("stored guest sponsor = %+v, %v", g, err)
	}
	// Mallory has no Entra account: recorded here only.
	r, view, err := h.player.Command(h.ctx, mallory, bot.Command, "")
	if err != nil || view == "" {
		t.Fatalf("command: %v %s", err, r.Body)
	}
	if _, err := h.player.Submit(h.ctx, mallory, view, inviteValues("carl@fabrikam.com", "Carl", "slack_link")); err != nil {
		t.Fatal(err)
	}
	if err := h.slack.WaitFor(h.ctx, func() bool { return len(h.dmsTo(mallory)) > 0 }); err != nil {
		t.Fatal(err)
	}
	h.app.svc.Wait()
	invs, _ := h.app.db.Invitations(h.ctx, flows.InvitationFilter{Emails: []string{"carl@fabrikam.com"}})
	if len(invs) != 1 || invs[0].State != flows.StateNotified || invs[0].Sponsor == nil || invs[0].Sponsor.InEntra || invs[0].Sponsor.Note == "" {
		t.Errorf("Carl's invitation: %+v", invs)
	}
}

// clock is a settable clock for flows.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// Expiry: the inviter picks 30 days in the dialog; the sponsor is asked a
// week before, extends once, and at the (new) end the guest leaves the
// group.
func TestE2EExpiry(t *testing.T) {
	c := &clock{}
	h := startWith(t, overHTTP, deps{pollInterval: -1, now: c.now})
	view := h.open(t, "")
	raw, _ := h.slack.View(view)
	if !strings.Contains(string(raw), `"block_id":"expires_in"`) {
		t.Fatalf("the dialog has no expiry choice:\n%s", raw)
	}
	v := inviteValues("bob@fabrikam.com", "Bob", "slack_link", emuPortal)
	v[bot.BlockExpiresIn] = map[string]any{bot.BlockExpiresIn: map[string]any{"type": "static_select", "selected_option": map[string]any{"value": "30d"}}}
	h.submit(t, view, v)
	h.waitDM(t, 1)
	inv := h.invitation(t)
	if inv.Expiry == nil || inv.Expiry.Period != 30*24*time.Hour {
		t.Fatalf("expiry = %+v, want 30 days", inv.Expiry)
	}
	c.advance(24 * 24 * time.Hour)
	if st := h.trackCycle(t); st.ExpiryWarned != 1 {
		t.Fatalf("cycle a week before the end: %+v", st)
	}
	var reminder slackfake.Message
	for _, m := range h.dmsTo(ann) {
		if strings.Contains(string(m.Blocks), bot.ActionExtend) {
			reminder = m
		}
	}
	if reminder.TS == "" {
		t.Fatalf("no reminder with an Extend button in Ann's DMs")
	}
	// Mallory cannot extend Ann's guest; Ann can.
	if r, _ := h.player.Press(h.ctx, mallory, slackfake.MessageContainer(reminder), bot.ActionExtend, inv.ID, ""); r.Status != http.StatusOK {
		t.Fatalf("press: %d", r.Status)
	}
	if got := h.recordOf(t, inv.ID); !got.Expiry.At.Equal(inv.Expiry.At) {
		t.Fatal("Mallory extended Ann's guest")
	}
	if r, _ := h.player.Press(h.ctx, ann, slackfake.MessageContainer(reminder), bot.ActionExtend, inv.ID, ""); r.Status != http.StatusOK {
		t.Fatalf("press: %d", r.Status)
	}
	if got := h.recordOf(t, inv.ID); !got.Expiry.At.Equal(inv.Expiry.At.Add(30 * 24 * time.Hour)) {
		t.Fatalf("after Extend the access ends %v, want 30 days later than %v", got.Expiry.At, inv.Expiry.At)
	}
	c.advance(7 * 24 * time.Hour) // the old end: nothing happens
	h.trackCycle(t)
	if m := h.tenant.GroupMembers(emuPortal); len(m) != 1 {
		t.Fatalf("the guest left the group at the old end: %v", m)
	}
	c.advance(30 * 24 * time.Hour)
	if st := h.trackCycle(t); st.Expired != 1 {
		t.Fatalf("cycle at the new end: %+v", st)
	}
	if m := h.tenant.GroupMembers(emuPortal); len(m) != 0 {
		t.Errorf("still in the group after expiry: %v", m)
	}
	if got := h.recordOf(t, inv.ID); got.State != flows.StateRevoked {
		t.Errorf("record = %s, want revoked", got.State)
	}
	var told bool
	for _, m := range h.dmsTo(ann) {
		told = told || strings.Contains(m.Text, "expired")
	}
	if !told {
		t.Error("Ann was not told the access expired")
	}
}

// Admins (and inviters, approvers) may be Slack user groups: invitebot
// expands them with usergroups.users.list; an unreadable group grants
// nothing.
func TestE2EUserGroupsInPolicy(t *testing.T) {
	h := start(t)
	h.slack.SetUserGroup("S0ADMINS", "U0BOSS")
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("admins: [S0ADMINS, S0MISSING]\ninviters: [S0ADMINS, "+ann+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cfg.PolicyPath = path
	h.reloadPolicy(t)
	p := h.app.svc.Policy()
	if !p.IsAdmin("U0BOSS") || p.IsAdmin(ann) || !p.MayInvite("U0BOSS") || p.MayInvite(mallory) {
		t.Fatalf("expanded policy: admins %v inviters %v", p.Admins, p.Inviters)
	}
	// U0BOSS, an admin through the group, gets the admin-only user type.
	_, view, err := h.player.Command(h.ctx, "U0BOSS", bot.Command, "")
	if err != nil || view == "" {
		t.Fatal(err)
	}
	if raw, _ := h.slack.View(view); !strings.Contains(string(raw), `"block_id":"user_type"`) {
		t.Error("a member of the admins group did not get the admin dialog")
	}
	// The group changes; the next expansion (every 10 minutes, or a reload) follows.
	h.slack.SetUserGroup("S0ADMINS", mallory)
	h.reloadPolicy(t)
	if p := h.app.svc.Policy(); p.IsAdmin("U0BOSS") || !p.IsAdmin(mallory) {
		t.Errorf("after the group changed: admins %v", p.Admins)
	}
}

package main

// End-to-end tests of the two origins of invitations other than the
// dialog, with INVITEBOT_INVITE_AS=inviter: bulk files (in Slack and on
// the command line) and the Workflow Builder step.

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/slackfake"
)

const inviterCSV = "email,send microsoft email\n" +
	"bob@fabrikam.com,true\n" + // Microsoft's email
	"carol@northwind.com,false\n" // Slack link: its redeem link is DMed

// connectPrompts returns the bot's messages in user's DM that ask them to
// connect (latest versions).
func (h *harness) connectPrompts(user string) []slackfake.Message {
	var out []slackfake.Message
	for _, m := range h.dmsTo(user) {
		if connectLinkRE.Match(m.Blocks) {
			out = append(out, m)
		}
	}
	return out
}

// Ensure a bulk file from a person who has not connected is refused as a
// whole, before it is downloaded, with one message that offers the
// connect button (no record, no Graph call, no DM per row); once they are
// connected the same file is sent as them; and a sign-in Microsoft no
// longer accepts refuses the next file the same way.
func TestE2EBulkAsInviter(t *testing.T) {
	rig := startInviterRig(t, overHTTP, deps{userTokenLifetime: time.Minute}) // the token is refreshed at each use
	h, annEntra := rig.h, rig.ann
	if err := poll(h.ctx, func() bool { return strings.Contains(h.logs.String(), `"msg":"slack identity"`) }); err != nil {
		t.Fatal(err)
	}
	// The start-up's read of the verified domains is done first.
	if err := poll(h.ctx, func() bool {
		return slices.ContainsFunc(h.tenant.Requests(), func(r graphfake.Request) bool { return r.Path == "/v1.0/organization" })
	}); err != nil {
		t.Fatal(err)
	}
	graphCalls := len(h.tenant.Requests())
	h.shareFile(t, ann, "guests.csv", []byte(inviterCSV))
	if err := h.slack.WaitFor(h.ctx, func() bool { return len(h.dmsTo(ann)) >= 1 }); err != nil {
		t.Fatalf("no answer: %v (log: %s)", err, h.logs.String())
	}
	m := h.dmsTo(ann)[0]
	link := connectLinkRE.FindString(string(m.Blocks))
	if !strings.Contains(m.Text, "Connect your Microsoft account* to run guests.csv") || !strings.Contains(m.Text, "Nobody was invited") || link == "" {
		t.Fatalf("refusal = %q %s", m.Text, m.Blocks)
	}
	if invs, _ := h.app.db.Invitations(h.ctx, flows.InvitationFilter{}); len(invs) != 0 {
		t.Errorf("%d invitations recorded for a refused file", len(invs))
	}
	if rs := h.tenant.Requests(); len(rs) != graphCalls {
		t.Errorf("Graph calls for a refused file: %+v", rs[graphCalls:])
	}
	if n := len(h.slack.Calls("files.download")); n != 0 {
		t.Errorf("a refused file was downloaded %d times", n)
	}
	if n, u := len(h.slack.Calls("chat.postMessage")), len(h.slack.Calls("chat.update")); n != 1 || u != 0 {
		t.Errorf("chat.postMessage %d, chat.update %d; want the one refusal", n, u)
	}

	rig.signIn()
	if status, page := h.browse(t, link); status != http.StatusOK {
		t.Fatalf("connect: %d %s", status, page)
	}
	h.waitDM(t, 2) // "Connected as …"
	h.shareFile(t, ann, "guests.csv", []byte(inviterCSV))
	f, rows := h.resultsFile(t, ann, 1)
	if !strings.Contains(f.Comment, "2 invited.") || len(rows) != 3 {
		t.Fatalf("results %q:\n%s", f.Comment, f.Content)
	}
	sent := h.tenant.Invitations()
	if len(sent) != 2 {
		t.Fatalf("%d invitations sent, want 2", len(sent))
	}
	for _, inv := range sent {
		if inv.InvitedBy != annEntra.ID {
			t.Errorf("%v sent by %q, want Ann (%s)", inv.Body["invitedUserEmailAddress"], inv.InvitedBy, annEntra.ID)
		}
	}
	if n := len(h.connectPrompts(ann)); n != 1 {
		t.Errorf("%d connect prompts, want the one refusal", n)
	}

	// Microsoft refuses her refresh token now: the next file is refused as
	// a whole, asking her to reconnect.
	h.sts.RevokeSignIns(annEntra.ID)
	before := len(h.dmsTo(ann))
	h.shareFile(t, ann, "more.csv", []byte("email\ndave@fabrikam.com\n"))
	if err := h.slack.WaitFor(h.ctx, func() bool { return len(h.dmsTo(ann)) > before }); err != nil {
		t.Fatalf("no answer: %v", err)
	}
	m = h.dmsTo(ann)[before]
	if !strings.Contains(m.Text, "Reconnect your Microsoft account* to run more.csv") || !connectLinkRE.Match(m.Blocks) {
		t.Errorf("after revocation = %q", m.Text)
	}
	h.app.svc.Wait()
	if n := len(h.tenant.Invitations()); n != 2 {
		t.Errorf("%d invitations after the refused file, want still 2", n)
	}
	if n := len(h.slack.Calls("files.download")); n != 1 {
		t.Errorf("files.download %d, want 1 (the refused files are not downloaded)", n)
	}
	if codes, _ := h.sts.Grants(); codes != 1 {
		t.Errorf("%d sign-ins, want 1", codes)
	}
}

// Ensure inviter_or_app sends the file of a person who has not connected
// as the app, without asking them to connect.
func TestE2EBulkInviterOrApp(t *testing.T) {
	h, _ := startAsInviter(t, overHTTP, "inviter_or_app", 0)
	h.shareFile(t, ann, "guests.csv", []byte(inviterCSV))
	if f, _ := h.resultsFile(t, ann, 1); !strings.Contains(f.Comment, "2 invited.") {
		t.Fatalf("results %q:\n%s", f.Comment, f.Content)
	}
	sent := h.tenant.Invitations()
	if len(sent) != 2 || sent[0].InvitedBy != "" || sent[1].InvitedBy != "" {
		t.Errorf("invitations %+v, want two sent as the app", sent)
	}
	if n := len(h.connectPrompts(ann)); n != 0 {
		t.Errorf("%d connect prompts in inviter_or_app mode", n)
	}
}

// Ensure `invitebot bulk -as` sends with the -as person's own sign-in in
// inviter mode, and refuses the file (nothing recorded or sent, no
// results file) while they are not connected.
func TestBulkCLIAsInviter(t *testing.T) {
	rig := startInviterRig(t, overHTTP, deps{})
	h, annEntra := rig.h, rig.ann
	if err := h.stopApp(); err != nil { // the CLI runs with the bot stopped
		t.Fatal(err)
	}
	env := doctorEnv(t, h, emuPortal)
	env["INVITEBOT_DB"] = h.cfg.DBPath
	env["INVITEBOT_INVITE_AS"], env["INVITEBOT_PUBLIC_URL"], env["INVITEBOT_TOKEN_KEY"] = "inviter", h.cfg.PublicURL, emuTokenKey
	delete(env, "SLACK_SIGNING_SECRET")
	dir := t.TempDir()
	in := filepath.Join(dir, "guests.csv")
	if err := os.WriteFile(in, []byte(inviterCSV), 0o600); err != nil {
		t.Fatal(err)
	}
	bulk := func() (string, error) {
		var out, errOut bytes.Buffer
		err := runBulk(h.ctx, []string{"-as", ann, in}, func(k string) string { return env[k] }, deps{authHTTP: h.sts.Client()}, &out, &errOut)
		return out.String(), err
	}
	_, err := bulk()
	if err == nil || !strings.Contains(err.Error(), "sends invitations as "+ann+", who has not connected their Microsoft account") ||
		!strings.Contains(err.Error(), "/invite-guest connect") || !strings.HasSuffix(err.Error(), "nobody was invited") {
		t.Fatalf("unconnected: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "guests.results.csv")); !os.IsNotExist(err) {
		t.Errorf("a results file for a refused run: %v", err)
	}
	if n := len(h.tenant.Invitations()); n != 0 {
		t.Fatalf("%d invitations sent for a refused run", n)
	}

	// Ann connects in Slack; the bot is stopped again for the CLI.
	if err := h.startApp(); err != nil {
		t.Fatal(err)
	}
	rig.connect()
	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	out, err := bulk()
	if err != nil || !strings.Contains(out, "2 invited; results in") {
		t.Fatalf("connected: %v\n%s", err, out)
	}
	sent := h.tenant.Invitations()
	if len(sent) != 2 || sent[0].InvitedBy != annEntra.ID || sent[1].InvitedBy != annEntra.ID {
		t.Errorf("invitations %+v, want two sent by Ann (%s)", sent, annEntra.ID)
	}
}

// Ensure a workflow step in inviter mode: a requester who has not
// connected gets one DM with the connect button while the step stays in
// progress, and once they connect the invitation is sent as them and the
// step completes once; later steps are sent as them at once; a requester
// who never connects has the step completed with an error after 24 hours.
func TestE2EWorkflowStepAsInviter(t *testing.T) {
	c := &clock{}
	rig := startInviterRig(t, overHTTP, deps{now: c.now})
	h, annEntra := rig.h, rig.ann
	const carl = "U0CARL"
	h.slack.AddUser(carl, "carl@contoso.com", "Carl Never")

	never := h.runStep(t, carl, map[string]any{bot.StepEmail: "dora@fabrikam.com", bot.StepDelivery: "microsoft_email"})
	x := h.runStep(t, ann, map[string]any{bot.StepEmail: "bob@fabrikam.com", bot.StepDelivery: "slack_link"})
	link := h.connectLink(t, 1)
	if dm := h.waitDM(t, 1); !strings.Contains(dm, "asked for by a workflow") {
		t.Errorf("the connect DM does not say the workflow waits: %s", dm)
	}
	if rec := h.stepRecord(t, x); rec.State != flows.StateAwaitingSignIn {
		t.Fatalf("record %s, want awaiting_sign_in", rec.State)
	}
	if n := len(h.slack.Completions("")); n != 0 {
		t.Fatalf("%d completions while waiting for the sign-in", n)
	}
	if n := len(h.tenant.Invitations()); n != 0 {
		t.Fatalf("%d invitations sent before anyone connected", n)
	}

	rig.signIn()
	if status, page := h.browse(t, link); status != http.StatusOK {
		t.Fatalf("connect: %d %s", status, page)
	}
	got := h.completion(t, x)
	if !got.Success || got.Outputs[bot.StepOutcome] != "invited" || got.Outputs[bot.StepObjectID] == "" {
		t.Errorf("completion = %+v", got)
	}
	if sent := h.tenant.Invitations(); len(sent) != 1 || sent[0].InvitedBy != annEntra.ID {
		t.Fatalf("invitations %+v, want one sent by Ann (%s)", sent, annEntra.ID)
	}

	// Connected: the next step goes out as her at once, with no prompt.
	y := h.runStep(t, ann, map[string]any{bot.StepEmail: "erin@fabrikam.com", bot.StepDelivery: "microsoft_email"})
	if got := h.completion(t, y); !got.Success || got.Outputs[bot.StepOutcome] != "invited" {
		t.Errorf("second step: %+v", got)
	}
	if sent := h.tenant.Invitations(); len(sent) != 2 || sent[1].InvitedBy != annEntra.ID {
		t.Errorf("second invitation sent by %q", sent[len(sent)-1].InvitedBy)
	}
	if n := len(h.connectPrompts(ann)); n != 1 {
		t.Errorf("%d connect prompts to Ann, want 1", n)
	}

	// Carl never connects: still in progress just before 24 hours, then
	// completed once with the reason.
	if n := len(h.connectPrompts(carl)); n != 1 {
		t.Errorf("%d connect prompts to Carl, want 1", n)
	}
	c.advance(flows.SignInTimeout - time.Minute)
	h.trackCycle(t)
	if n := len(h.slack.Completions(never.ID)); n != 0 {
		t.Fatalf("completed before 24 hours: %+v", h.slack.Completions(never.ID))
	}
	c.advance(2 * time.Minute)
	h.trackCycle(t)
	got = h.completion(t, never)
	if got.Success || !strings.Contains(got.Error, "Not connected") || !strings.Contains(got.Error, "did not connect their Microsoft account within 24 h") {
		t.Errorf("timed-out step: %+v", got)
	}
	if rec := h.stepRecord(t, never); rec.State != flows.StateFailed || rec.Failure.Code != flows.FailNotConnected {
		t.Errorf("timed-out record: %s %+v", rec.State, rec.Failure)
	}
	h.trackCycle(t) // nothing more
	if n := len(h.slack.Completions(never.ID)); n != 1 {
		t.Errorf("%d completions of the timed-out step, want 1", n)
	}
	if n := len(h.tenant.Invitations()); n != 2 {
		t.Errorf("%d invitations, want Ann's 2", n)
	}
}

// afterInvite calls fn once, after Graph has answered the first
// POST /invitations.
type afterInvite struct {
	mu   sync.Mutex
	fn   func()
	done bool
}

func (a *afterInvite) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/invitations") {
		a.mu.Lock()
		if !a.done && a.fn != nil {
			a.done = true
			a.fn()
		}
		a.mu.Unlock()
	}
	return resp, err
}

// Ensure a sign-in Microsoft revokes during a bulk run (after its first
// row was sent): the other rows wait (awaiting_sign_in in the results),
// the run's final message carries the one Reconnect button (no DM per
// row), and after reconnecting each waiting row is sent once, as the
// person.
func TestE2EBulkAsInviterRevokedDuringRun(t *testing.T) {
	hook := &afterInvite{}
	rig := startInviterRig(t, overHTTP, deps{graphTransport: hook, userTokenLifetime: time.Minute, // refreshed at each use
		env: map[string]string{"INVITEBOT_BULK_CONCURRENCY": "1"}})
	h, annEntra := rig.h, rig.ann
	rig.connect()
	h.waitDM(t, 1) // "Connected as …"
	hook.mu.Lock()
	hook.fn = func() { h.sts.RevokeSignIns(annEntra.ID) }
	hook.mu.Unlock()
	const file = "email,send microsoft email\nbob@fabrikam.com,true\ncarol@fabrikam.com,true\ndave@fabrikam.com,true\n"
	h.shareFile(t, ann, "three.csv", []byte(file))
	f, rows := h.resultsFile(t, ann, 1)
	if !strings.Contains(f.Comment, "1 invited, 2 awaiting sign in") || rows[1][3] != "invited" || rows[2][3] != "awaiting_sign_in" || rows[3][3] != "awaiting_sign_in" {
		t.Fatalf("results %q:\n%s", f.Comment, f.Content)
	}
	prompts := h.connectPrompts(ann)
	if len(prompts) != 1 || !strings.Contains(prompts[0].Text, "2 rows wait for you to reconnect your Microsoft account") {
		t.Fatalf("connect prompts: %+v", prompts)
	}
	if n := len(h.tenant.Invitations()); n != 1 {
		t.Fatalf("%d invitations sent, want bob's", n)
	}

	dms := len(h.dmsTo(ann))
	rig.signIn()
	if status, page := h.browse(t, connectLinkRE.FindString(string(prompts[0].Blocks))); status != http.StatusOK {
		t.Fatalf("reconnect: %d %s", status, page)
	}
	if dm := h.waitDM(t, dms+1); !strings.Contains(dm, "2 waiting invitation(s) go on now") {
		t.Errorf("connected DM: %s", dm)
	}
	if err := poll(h.ctx, func() bool { return len(h.tenant.Invitations()) >= 3 }); err != nil {
		t.Fatalf("the waiting rows were not sent: %v", err)
	}
	h.app.svc.Wait()
	sent := h.tenant.Invitations()
	if len(sent) != 3 {
		t.Fatalf("%d invitations, want 3", len(sent))
	}
	for _, inv := range sent {
		if inv.InvitedBy != annEntra.ID {
			t.Errorf("%v sent by %q, want Ann", inv.Body["invitedUserEmailAddress"], inv.InvitedBy)
		}
	}
	if n := len(h.connectPrompts(ann)); n != 1 {
		t.Errorf("%d connect prompts, want 1", n)
	}
	h.shareFile(t, ann, "three.csv", []byte(file))
	if f, _ := h.resultsFile(t, ann, 2); !strings.Contains(f.Comment, "3 invited.") {
		t.Errorf("final results %q:\n%s", f.Comment, f.Content)
	}
	if n := len(h.tenant.Invitations()); n != 3 {
		t.Errorf("%d invitations after the re-run, want 3", n)
	}
}

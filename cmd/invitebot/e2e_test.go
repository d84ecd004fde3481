package main

// End-to-end tests: invitebot serve's HTTP handlers, driven with requests
// signed as Slack signs them, against the Graph tenant emulator (with the
// real azidentity and msgraph-sdk-go code) and the Slack Web API fake.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
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

const ann = "U0ANN"

type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// logBuffer collects the bot's log lines, for the secrets check.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type harness struct {
	*emulated
	sleeps *sleeps
	logs   *logBuffer
	ctx    context.Context
}

// start runs invitebot in HTTP mode on fresh emulators.
func start(t *testing.T) *harness { return startOver(t, overHTTP) }

// bothTransports runs test against invitebot in HTTP mode and in Socket Mode.
func bothTransports(t *testing.T, test func(*testing.T, *harness)) {
	for name, tr := range map[string]transport{"HTTP": overHTTP, "SocketMode": overSocket} {
		t.Run(name, func(t *testing.T) { test(t, startOver(t, tr)) })
	}
}

func startOver(t *testing.T, tr transport) *harness {
	t.Helper()
	return startWith(t, tr, deps{pollInterval: -1}) // tests run tracking cycles themselves unless they say otherwise
}

// startWith runs invitebot with d (its sleep is the harness's).
func startWith(t *testing.T, tr transport, d deps) *harness {
	t.Helper()
	return startOn(t, tr, d, filepath.Join(t.TempDir(), "invitebot.db"))
}

// startOn runs invitebot with d on the store db (INVITEBOT_DB).
func startOn(t *testing.T, tr transport, d deps, db string) *harness {
	t.Helper()
	h := &harness{sleeps: &sleeps{}, logs: &logBuffer{}}
	log := slog.New(bot.LogHandler(slog.NewJSONHandler(io.MultiWriter(h.logs), &slog.HandlerOptions{Level: slog.LevelDebug})))
	d.sleep = h.sleeps.sleep
	e, err := startEmulated(db, log, d, tr)
	if err != nil {
		t.Fatal(err)
	}
	h.emulated = e
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
		// Secrets, tokens (Graph's access token is a JWT: eyJ…) and redeem
		// links never reach the log.
		logs := h.logs.String()
		for _, s := range []string{emuSecret, emuSigning, "xoxb-emulated", emuAppToken, "/socket-mode/link", "redeem?", "ticket", "eyJ0eXAi"} {
			if strings.Contains(logs, s) {
				t.Errorf("log contains %q", s)
			}
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	h.ctx = ctx
	return h
}

// open runs /invite-guest and returns the opened dialog's view ID.
func (h *harness) open(t *testing.T, text string) string {
	t.Helper()
	r, view, err := h.player.Command(h.ctx, ann, bot.Command, text)
	if err != nil || r.Status != http.StatusOK || view == "" {
		t.Fatalf("command: %v %d %s, view %q", err, r.Status, r.Body, view)
	}
	return view
}

func (h *harness) submit(t *testing.T, view string, values map[string]map[string]any) map[string]any {
	t.Helper()
	r, err := h.player.Submit(h.ctx, ann, view, values)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("submit: %v %d %s", err, r.Status, r.Body)
	}
	return r.JSON()
}

// waitDM waits for the n-th DM to Ann and returns its text and blocks.
func (h *harness) waitDM(t *testing.T, n int) string {
	t.Helper()
	if err := h.slack.WaitFor(h.ctx, func() bool { return len(h.dmsTo(ann)) >= n }); err != nil {
		t.Fatalf("waiting for DM %d: %v (log: %s)", n, err, h.logs.String())
	}
	h.app.svc.Wait() // the DM is sent before the record says so
	m := h.dmsTo(ann)[n-1]
	return m.Text + "\n" + string(m.Blocks)
}

func (h *harness) invitation(t *testing.T) *flows.Invitation {
	t.Helper()
	invs, err := h.app.db.Invitations(h.ctx, flows.InvitationFilter{})
	if err != nil || len(invs) == 0 {
		t.Fatalf("invitations: %v, %v", invs, err)
	}
	return invs[len(invs)-1]
}

func TestE2ENewGuest(t *testing.T) { bothTransports(t, testNewGuest) }

func testNewGuest(t *testing.T, h *harness) {
	view := h.open(t, "bob@fabrikam.com Bob Smith")
	raw, _ := h.slack.View(view)
	if !bytes.Contains(raw, []byte(`"initial_value":"bob@fabrikam.com"`)) || !bytes.Contains(raw, []byte(`"callback_id":"invite_guest"`)) {
		t.Errorf("dialog not pre-filled: %s", raw)
	}
	ack := h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob Smith", "slack_link", emuPortal))
	if ack["response_action"] != "update" {
		t.Errorf("ack = %v, want an update to the working view", ack)
	}
	dm := h.waitDM(t, 1)
	invs := h.tenant.Invitations()
	if len(invs) != 1 || invs[0].Body["sendInvitationMessage"] != false || invs[0].Body["invitedUserDisplayName"] != "Bob Smith" {
		t.Fatalf("invitations = %+v", invs)
	}
	uid := invs[0].UserID
	if m := h.tenant.GroupMembers(emuPortal); len(m) != 1 || m[0] != uid {
		t.Errorf("group members = %v, want %s", m, uid)
	}
	if !strings.Contains(dm, "login.microsoftonline.com/redeem") || !strings.Contains(dm, uid) {
		t.Errorf("DM lacks the redeem link or the object ID:\n%s", dm)
	}
	inv := h.invitation(t)
	if inv.State != flows.StateNotified || inv.ObjectID != uid {
		t.Errorf("record = %s %s", inv.State, inv.ObjectID)
	}
	g, err := h.app.db.Guest(h.ctx, uid)
	if err != nil || g.Email != "bob@fabrikam.com" || g.InvitedBy.UserID != ann || g.InvitedBy.TeamID != emuTeam {
		t.Errorf("guest = %+v, %v", g, err)
	}
	// The link is only ever in the inviter's DM.
	for _, m := range h.slack.Messages() {
		if m.Channel != slackfake.DMChannel(ann) && strings.Contains(m.Text+string(m.Blocks), "redeem") {
			t.Errorf("redeem link posted to %s", m.Channel)
		}
	}
}

func TestE2EExistingUserPick(t *testing.T) { bothTransports(t, testExistingUserPick) }

func testExistingUserPick(t *testing.T, h *harness) {
	u := h.tenant.AddUser(graphfake.User{DisplayName: "Alice Partner", Mail: "alice@partner.example", UserType: "Guest"})
	view := h.open(t, "")
	h.submit(t, view, inviteValues("alice@partner.example", "Alice", "slack_link", emuPortal))
	if err := h.slack.WaitFor(h.ctx, func() bool { return h.viewCallback(view) == bot.CallbackPick }); err != nil {
		t.Fatalf("no pick dialog: %v", err)
	}
	if !strings.Contains(h.viewText(view), "Alice") {
		t.Errorf("pick dialog lacks the match:\n%s", h.viewText(view))
	}
	h.submit(t, view, map[string]map[string]any{"pick": {"pick": slackfake.Radio(u.ID)}})
	dm := h.waitDM(t, 1)
	if len(h.tenant.Invitations()) != 0 {
		t.Errorf("an invitation was sent for a picked account")
	}
	if m := h.tenant.GroupMembers(emuPortal); len(m) != 1 || m[0] != u.ID {
		t.Errorf("members = %v", m)
	}
	// The DM names the account picked as the directory names it, not as
	// the dialog was filled in.
	if !strings.Contains(dm, "*Alice Partner* already had an account") {
		t.Errorf("DM = %s", dm)
	}
}

func TestE2EValidationErrors(t *testing.T) { bothTransports(t, testValidationErrors) }

func testValidationErrors(t *testing.T, h *harness) {
	tests := []struct {
		name, field string
		edit        func(map[string]map[string]any)
	}{
		{"Malformed", "email", func(v map[string]map[string]any) { v["email"]["email"] = slackfake.Text("bob@") }},
		{"PlusAddress", "email", func(v map[string]map[string]any) { v["email"]["email"] = slackfake.Text("bob+x@fabrikam.com") }},
		{"TooLong", "email", func(v map[string]map[string]any) {
			v["email"]["email"] = slackfake.Text(strings.Repeat("b", 250) + "@fabrikam.com")
		}},
		{"InternalUser", "email", func(v map[string]map[string]any) { v["email"]["email"] = slackfake.Text("carol@contoso.com") }},
		{"HTTPRedirect", "redirect_url", func(v map[string]map[string]any) {
			v["redirect_url"]["redirect_url"] = slackfake.Text("http://x.example")
		}},
		{"BadRedirect", "redirect_url", func(v map[string]map[string]any) { v["redirect_url"]["redirect_url"] = slackfake.Text("not a url") }},
		{"LongName", "display_name", func(v map[string]map[string]any) {
			v["display_name"]["display_name"] = slackfake.Text(strings.Repeat("n", 300))
		}},
		// A forged value for a block the non-admin's dialog does not have:
		// the error goes where Slack can show it, next to the email.
		{"MemberByNonAdmin", "email", func(v map[string]map[string]any) {
			v["user_type"] = map[string]any{"user_type": slackfake.Radio("Member")}
		}},
		{"ForgedGroup", "groups", func(v map[string]map[string]any) { v["groups"] = map[string]any{"groups": slackfake.Multi("forged")} }},
		{"BadCC", "cc", setText("cc", "carol at fabrikam")},
		{"LongMessage", "message", setText("message", strings.Repeat("m", flows.MaxMessageLen+1))},
		{"LongRedirect", "redirect_url", setText("redirect_url", "https://x.example/"+strings.Repeat("p", flows.MaxRedirectURLLen))},
		{"LongGivenName", "given_name", setText("given_name", strings.Repeat("g", flows.MaxGivenNameLen+1))},
		{"LongSurname", "surname", setText("surname", strings.Repeat("s", flows.MaxSurnameLen+1))},
		{"LongCompany", "company_name", setText("company_name", strings.Repeat("c", flows.MaxCompanyNameLen+1))},
		{"LongJobTitle", "job_title", setText("job_title", strings.Repeat("j", flows.MaxJobTitleLen+1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			view := h.open(t, "")
			v := inviteValues("bob@fabrikam.com", "Bob", "slack_link")
			tt.edit(v)
			ack := h.submit(t, view, v)
			errs, _ := ack["errors"].(map[string]any)
			if ack["response_action"] != "errors" || errs[tt.field] == nil {
				t.Fatalf("ack = %v, want an error on %s", ack, tt.field)
			}
		})
	}
	if n := len(h.tenant.Invitations()); n != 0 {
		t.Errorf("%d invitations sent for rejected submissions", n)
	}
	if invs, _ := h.app.db.Invitations(h.ctx, flows.InvitationFilter{}); len(invs) != 0 {
		t.Errorf("%d records for rejected submissions", len(invs))
	}
}

// setText sets a text input of the dialog.
func setText(block, value string) func(map[string]map[string]any) {
	return func(v map[string]map[string]any) { v[block] = map[string]any{block: slackfake.Text(value)} }
}

func TestE2EForgedAndStaleSignatures(t *testing.T) {
	h := start(t)
	for name, p := range map[string]*slackfake.Player{
		"WrongSecret": {BotURL: h.player.BotURL, Secret: "forged", Team: emuTeam, Slack: h.slack},
		"Stale": {BotURL: h.player.BotURL, Secret: emuSigning, Team: emuTeam, Slack: h.slack,
			Now: func() time.Time { return time.Now().Add(-6 * time.Minute) }},
	} {
		r, view, err := p.Command(h.ctx, ann, bot.Command, "bob@fabrikam.com")
		if err != nil || r.Status != http.StatusUnauthorized || view != "" {
			t.Errorf("%s command: %v status %d view %q, want 401 and no dialog", name, err, r.Status, view)
		}
		r, err = p.Interact(h.ctx, map[string]any{"type": "view_submission", "view": map[string]any{"id": "V1", "callback_id": "invite_guest"}})
		if err != nil || r.Status != http.StatusUnauthorized {
			t.Errorf("%s interaction: %v status %d, want 401", name, err, r.Status)
		}
	}
	if n := len(h.slack.Calls("views.open")); n != 0 {
		t.Errorf("%d views.open calls for forged requests", n)
	}
	for _, r := range h.tenant.Requests() {
		if r.Path != "/v1.0/organization" { // start-up reads the verified domains
			t.Errorf("forged requests caused a Graph call: %s %s", r.Method, r.Path)
		}
	}
}

func TestE2EGraphForbidden(t *testing.T) {
	h := start(t)
	h.tenant.Fail(graphfake.RoutePostInvitations, -1, graphfake.Fault{Status: 403, Code: "Authorization_RequestDenied", Message: "Insufficient privileges to complete the operation."})
	view := h.open(t, "")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob", "slack_link", emuPortal))
	dm := h.waitDM(t, 1)
	if !strings.Contains(dm, "User.Invite.All") {
		t.Errorf("DM does not explain the 403:\n%s", dm)
	}
	if inv := h.invitation(t); inv.State != flows.StateFailed || inv.Failure.Code != flows.FailForbidden {
		t.Errorf("record = %s %+v", inv.State, inv.Failure)
	}
	if n := len(h.tenant.GroupMembers(emuPortal)); n != 0 {
		t.Errorf("group adds after a failed invitation: %d", n)
	}
}

func TestE2EThrottlingAndReplicationDelay(t *testing.T) {
	h := start(t)
	h.tenant.Fail(graphfake.RoutePostInvitations, 2, graphfake.Throttled("2")) // a wait long enough for the dialog to show (the harness's sleeps are fake)
	h.tenant.SetReplicationDelay(2)
	view := h.open(t, "")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob", "slack_link", emuPortal))
	h.waitDM(t, 1)
	if inv := h.invitation(t); inv.State != flows.StateNotified || inv.InviteAttempt != 3 {
		t.Fatalf("record = %s after %d attempts", inv.State, inv.InviteAttempt)
	}
	got := h.sleeps.all()
	if len(got) < 3 || got[0] != 2*time.Second || got[1] != 2*time.Second {
		t.Errorf("waits = %v, want Retry-After 2s twice, then replication backoff", got)
	}
	if n := len(h.tenant.Users()); n != 1 {
		t.Errorf("%d users, want 1", n)
	}
	retrying := false
	for _, c := range h.slack.Calls("views.update") {
		raw, _ := json.Marshal(c.JSON)
		retrying = retrying || strings.Contains(string(raw), "retrying in 2s")
	}
	if !retrying {
		t.Error("the dialog never said it was retrying in Graph's Retry-After (2s)")
	}
}

// Graph's own message is shown (escaped) when it rejects the invitation,
// and the log does not carry the guest's address it may quote.
func TestE2EGraphRejectsWithItsMessage(t *testing.T) {
	h := start(t)
	h.tenant.Fail(graphfake.RoutePostInvitations, -1, graphfake.Fault{Status: 400, Code: "BadRequest",
		Message: "The invited user bob@fabrikam.com is blocked by <policy> & rules."})
	view := h.open(t, "")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob", "slack_link"))
	dm := strings.NewReplacer(`\u0026`, "&", `\u003c`, "<", `\u003e`, ">").Replace(h.waitDM(t, 1))
	if !strings.Contains(dm, "Microsoft Graph rejected the request: The invited user bob@fabrikam.com is blocked by &lt;policy&gt; &amp; rules.") {
		t.Errorf("DM does not show Graph's message, escaped:\n%s", dm)
	}
	if inv := h.invitation(t); inv.State != flows.StateFailed || inv.Failure.Code != flows.FailRejected {
		t.Errorf("record = %s %+v", inv.State, inv.Failure)
	}
	if logs := h.logs.String(); strings.Contains(logs, "bob@fabrikam.com") || !strings.Contains(logs, "<guest@fabrikam.com>") {
		t.Errorf("log carries the guest's address, or not the redacted message:\n%s", logs)
	}
}

// A second dialog for an address whose invitation is unfinished (here: its
// inviter has not picked among the matches yet) is answered next to the
// email field; nothing is sent to Graph.
func TestE2EAddressAlreadyBeingInvited(t *testing.T) {
	h := start(t)
	h.tenant.AddUser(graphfake.User{DisplayName: "Bob", Mail: "bob@fabrikam.com", UserType: "Guest", ExternalUserState: "Accepted"})
	first := h.open(t, "")
	h.submit(t, first, inviteValues("bob@fabrikam.com", "Bob", "slack_link"))
	if err := h.slack.WaitFor(h.ctx, func() bool { return h.viewCallback(first) == bot.CallbackPick }); err != nil {
		t.Fatal(err)
	}
	second := h.open(t, "")
	ack := h.submit(t, second, inviteValues("BOB@fabrikam.com", "Bob", "slack_link"))
	errs, _ := ack["errors"].(map[string]any)
	if msg, _ := errs["email"].(string); !strings.Contains(msg, "already in progress") {
		t.Errorf("ack = %v, want an error next to the email field", ack)
	}
	if n := len(h.tenant.Invitations()); n != 0 {
		t.Errorf("%d invitations POSTed", n)
	}
}

func TestE2EDuplicateSubmission(t *testing.T) { bothTransports(t, testDuplicateSubmission) }

func testDuplicateSubmission(t *testing.T, h *harness) {
	view := h.open(t, "")
	v := inviteValues("bob@fabrikam.com", "Bob", "slack_link")
	var wg sync.WaitGroup
	for range 3 { // a double (triple) click, or Slack re-delivering
		wg.Go(func() { h.submit(t, view, v) })
	}
	wg.Wait()
	h.waitDM(t, 1)
	h.app.svc.Wait()
	if n := len(h.tenant.Invitations()); n != 1 {
		t.Errorf("%d invitations, want 1", n)
	}
	if n := len(h.dmsTo(ann)); n != 1 {
		t.Errorf("%d DMs, want 1", n)
	}
}

// Ensure a restart in the middle of the flow resumes the invitation
// without a second invitation.
func TestE2ECrashAndResume(t *testing.T) {
	h := start(t)
	h.tenant.SetLatency(graphfake.RouteAddMember, time.Hour) // the process dies while adding the group
	view := h.open(t, "")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob", "slack_link", emuPortal))
	if err := h.slack.WaitFor(h.ctx, func() bool {
		inv, err := h.app.db.Invitations(h.ctx, flows.InvitationFilter{})
		return err == nil && len(inv) == 1 && inv[0].State == flows.StateAttributesSet
	}); err != nil {
		t.Fatal(err)
	}
	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	h.tenant.Reset()
	if err := h.startApp(); err != nil {
		t.Fatal(err)
	}
	h.waitDM(t, 1)
	if n := len(h.tenant.Invitations()); n != 1 {
		t.Errorf("%d invitations after resume, want 1", n)
	}
	if inv := h.invitation(t); inv.State != flows.StateNotified || len(h.tenant.GroupMembers(emuPortal)) != 1 {
		t.Errorf("after resume: %s, members %v", inv.State, h.tenant.GroupMembers(emuPortal))
	}
}

func TestE2EMentionInjectionIsEscaped(t *testing.T) { bothTransports(t, testMentionInjectionIsEscaped) }

func testMentionInjectionIsEscaped(t *testing.T, h *harness) {
	view := h.open(t, "")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "<!channel> & co", "slack_link"))
	dm := h.waitDM(t, 1)
	var blocks []map[string]any
	m := h.dmsTo(ann)[0]
	_ = json.Unmarshal(m.Blocks, &blocks)
	all := m.Text + string(m.Blocks) + h.viewText(view)
	if strings.Contains(all, "<!channel>") {
		t.Errorf("live mention in output:\n%s", dm)
	}
	if !strings.Contains(dm, `\u0026lt;!channel\u0026gt; \u0026amp; co`) && !strings.Contains(dm, "&lt;!channel&gt; &amp; co") {
		t.Errorf("escaped name missing:\n%s", dm)
	}
}

func TestHealthz(t *testing.T) {
	h := start(t)
	resp, err := http.Get(h.player.BotURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz = %d", resp.StatusCode)
	}
}

// In Socket Mode, a "disconnect" from Slack makes invitebot reconnect and
// carry on; no HTTP endpoint for Slack is exposed (there is no signing
// secret to check it against), and a restart connects again.
func TestE2ESocketModeReconnects(t *testing.T) {
	h := startOver(t, overSocket)
	if err := h.slack.Disconnect(); err != nil {
		t.Fatal(err)
	}
	if err := h.slack.WaitConnected(h.ctx, 2); err != nil {
		t.Fatalf("no reconnect after disconnect: %v", err)
	}
	view := h.open(t, "bob@fabrikam.com Bob")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob", "slack_link"))
	h.waitDM(t, 1)

	signed := &slackfake.Player{BotURL: h.player.BotURL, Secret: emuSigning, Team: emuTeam, Slack: h.slack}
	if r, _, err := signed.Command(h.ctx, ann, bot.Command, ""); err != nil || r.Status != http.StatusNotFound {
		t.Errorf("HTTP command in Socket Mode: %v %d, want 404", err, r.Status)
	}

	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	if err := h.startApp(); err != nil { // waits for the third connection
		t.Fatal(err)
	}
	view = h.open(t, "")
	if ack := h.submit(t, view, inviteValues("carol@fabrikam.com", "Carol", "slack_link")); ack["response_action"] != "update" {
		t.Errorf("ack after restart = %v", ack)
	}
	h.waitDM(t, 2)
	if n := len(h.tenant.Invitations()); n != 2 {
		t.Errorf("%d invitations, want 2", n)
	}
}

// Slack is served while Graph is still answering the start-up read of the
// verified domains: a slow tenant must not make slash commands time out.
func TestE2EServesWhileGraphIsSlowAtStart(t *testing.T) {
	bothTransports(t, func(t *testing.T, h *harness) {
		if err := h.stopApp(); err != nil {
			t.Fatal(err)
		}
		h.tenant.SetLatency(graphfake.RouteGetOrganization, time.Hour)
		if err := h.startApp(); err != nil {
			t.Fatal(err)
		}
		// Were the start-up read blocking, this would wait an hour (and
		// fail at the test's deadline), not merely be slow.
		view := h.open(t, "bob@fabrikam.com Bob")
		if ack := h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob", "slack_link")); ack["response_action"] != "update" {
			t.Errorf("ack = %v", ack)
		}
		if inv := h.invitation(t); inv.Request.Email != "bob@fabrikam.com" {
			t.Errorf("record = %+v", inv)
		}
	})
}

// Ensure a failed start-up read of the verified domains is logged as it
// fails, with the cause and the wait before the next try (not only once
// the retries are used up).
func TestE2EStartupReadFailuresLogged(t *testing.T) {
	h := start(t)
	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	h.tenant.Fail(graphfake.RouteGetOrganization, 2, graphfake.Unavailable())
	if err := h.startApp(); err != nil {
		t.Fatal(err)
	}
	for len(h.app.svc.Domains()) == 0 { // polled: no Slack call follows the read
		select {
		case <-h.ctx.Done():
			t.Fatalf("domains never read:\n%s", h.logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	n := 0
	for _, line := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(line, `"msg":"read verified domains failed; retrying"`) {
			n++
			if !strings.Contains(line, `"retry_in":`) || !strings.Contains(line, "503") {
				t.Errorf("retry line without its cause or wait: %s", line)
			}
		}
	}
	if n != 2 {
		t.Errorf("%d retry lines, want 2:\n%s", n, h.logs.String())
	}
}

// With Microsoft's email, everything the dialog collected reaches Graph:
// the message, the cc recipient, the user type an admin chose, and the
// attributes (PATCHed after the invitation). No redeem link is DMed.
func TestE2EMicrosoftEmailMemberWithAttributes(t *testing.T) {
	h := start(t)
	r, view, err := h.player.Command(h.ctx, emuAdmin, bot.Command, "dana@fabrikam.com Dana Lee")
	if err != nil || view == "" {
		t.Fatalf("command: %v %d %s", err, r.Status, r.Body)
	}
	v := inviteValues("dana@fabrikam.com", "Dana Lee", "microsoft_email", emuPortal)
	v["message"] = map[string]any{"message": slackfake.Text("Welcome aboard")}
	v["cc"] = map[string]any{"cc": slackfake.Text("sponsor@contoso.com")}
	v["user_type"] = map[string]any{"user_type": slackfake.Radio("Member")}
	v["job_title"] = map[string]any{"job_title": slackfake.Text("Architect")}
	v["company_name"] = map[string]any{"company_name": slackfake.Text("Fabrikam")}
	if r, err := h.player.Submit(h.ctx, emuAdmin, view, v); err != nil || r.Status != http.StatusOK {
		t.Fatalf("submit: %v %d %s", err, r.Status, r.Body)
	}
	if err := h.slack.WaitFor(h.ctx, func() bool { return len(h.dmsTo(emuAdmin)) == 1 }); err != nil {
		t.Fatal(err)
	}
	h.app.svc.Wait()
	invs := h.tenant.Invitations()
	if len(invs) != 1 {
		t.Fatalf("%d invitations", len(invs))
	}
	body, _ := json.Marshal(invs[0].Body)
	for _, want := range []string{`"sendInvitationMessage":true`, `"invitedUserType":"Member"`, `"customizedMessageBody":"Welcome aboard"`,
		`"ccRecipients":[{"emailAddress":{"address":"sponsor@contoso.com"}}]`, `"inviteRedirectUrl":"https://myapplications.microsoft.com"`,
		`"invitedUserDisplayName":"Dana Lee"`} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("invitation lacks %s:\n%s", want, body)
		}
	}
	u, _ := h.tenant.User(invs[0].UserID)
	if u.JobTitle != "Architect" || u.CompanyName != "Fabrikam" {
		t.Errorf("attributes not written: %+v", u)
	}
	dm := h.dmsTo(emuAdmin)[0]
	if all := dm.Text + string(dm.Blocks); strings.Contains(all, "redeem") || !strings.Contains(all, "invites@microsoft.com") {
		t.Errorf("DM for Microsoft's email:\n%s", all)
	}
}

// When the invitee is in Slack (e.g. Slack Connect) the inviter can DM
// them the invitation; nobody else can press that button for them.
func TestE2EDMInvitee(t *testing.T) {
	h := start(t)
	h.slack.AddUser("U0BOB", "bob@fabrikam.com", "Bob Smith")
	view := h.open(t, "")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob Smith", "slack_link"))
	dm := h.waitDM(t, 1)
	inv := h.invitation(t)
	// The DM goes out first; the check whether Bob is in Slack follows it
	// and adds the button to the DM.
	err := h.slack.WaitFor(h.ctx, func() bool {
		m := h.dmsTo(ann)[0]
		dm = m.Text + "\n" + string(m.Blocks)
		return strings.Contains(dm, `"action_id":"dm_invitee"`)
	})
	if err != nil || !strings.Contains(dm, inv.ID) {
		t.Fatalf("no button to send it to Bob (%v):\n%s", err, dm)
	}
	press := func(user string) {
		t.Helper()
		r, err := h.player.Interact(h.ctx, map[string]any{
			"type": "block_actions", "team": map[string]any{"id": emuTeam}, "user": map[string]any{"id": user},
			"channel": map[string]any{"id": slackfake.DMChannel(user)}, "trigger_id": h.slack.NewTriggerID(),
			"actions": []any{map[string]any{"type": "button", "action_id": "dm_invitee", "block_id": "b1", "value": inv.ID}},
		})
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("press: %v %d", err, r.Status)
		}
	}
	press("U0MALLORY")
	press(ann)
	var toBob []slackfake.Message
	var replies []string
	for _, m := range h.slack.Messages() {
		switch {
		case m.Channel == slackfake.DMChannel("U0BOB"):
			toBob = append(toBob, m)
		case m.Ephemeral:
			replies = append(replies, m.User+": "+m.Text)
		}
	}
	if len(toBob) != 1 || !strings.Contains(toBob[0].Text, "login.microsoftonline.com/redeem") {
		t.Errorf("DMs to Bob = %+v, want one with the link", toBob)
	}
	if len(replies) != 2 || !strings.Contains(replies[0], "U0MALLORY: Only the person") || !strings.HasPrefix(replies[1], ann+": Sent") {
		t.Errorf("ephemeral replies = %q", replies)
	}
}

// If Slack cannot be reached to report the outcome, the Entra work stands,
// the record says the inviter was not told, and nothing is repeated.
func TestE2ESlackDownAtTheEnd(t *testing.T) {
	h := start(t)
	h.slack.Fail("chat.postMessage", -1, slackfake.Fault{Status: http.StatusServiceUnavailable})
	view := h.open(t, "")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob", "slack_link", emuPortal))
	h.app.svc.Wait() // the submission started the invitation; wait for it to end
	inv := h.invitation(t)
	if inv.State != flows.StateFailed || inv.Failure == nil || inv.Failure.Code != flows.FailNotify || inv.ObjectID == "" {
		t.Fatalf("record = %s %+v", inv.State, inv.Failure)
	}
	if n, m := len(h.tenant.Invitations()), len(h.tenant.GroupMembers(emuPortal)); n != 1 || m != 1 {
		t.Errorf("%d invitations, %d members; want the Entra work done once", n, m)
	}
	if n := len(h.slack.Calls("chat.postMessage")); n < 2 {
		t.Errorf("%d chat.postMessage attempts, want retries", n)
	}
	if _, err := h.app.db.Guest(h.ctx, inv.ObjectID); err != nil {
		t.Errorf("guest not provisioned: %v", err)
	}
}

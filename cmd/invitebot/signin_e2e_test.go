package main

import (
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
)

var connectLinkRE = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/auth/start\?l=[A-Za-z0-9_-]+`)

// startAsInviter runs invitebot with INVITEBOT_INVITE_AS=mode, with Ann in
// Slack and in Entra (a member account with her Slack email).
func startAsInviter(t *testing.T, tr transport, mode string, lifetime time.Duration) (*harness, graphfake.User) {
	t.Helper()
	r := startInviterRig(t, tr, deps{env: map[string]string{"INVITEBOT_INVITE_AS": mode}, userTokenLifetime: lifetime})
	return r.h, r.ann
}

// inviterRig is invitebot in inviter mode with Ann in Slack and in Entra,
// and the steps and checks the inviter-mode tests share.
type inviterRig struct {
	t   *testing.T
	h   *harness
	ann graphfake.User // Ann's Entra account
}

// startInviterRig runs invitebot over tr with d, with no background
// tracking and INVITEBOT_INVITE_AS=inviter unless d.env says otherwise,
// with Ann in Slack and in Entra (a member account with her Slack email).
func startInviterRig(t *testing.T, tr transport, d deps) *inviterRig {
	t.Helper()
	env := map[string]string{"INVITEBOT_INVITE_AS": "inviter"}
	maps.Copy(env, d.env)
	d.env, d.pollInterval = env, -1
	h := startWith(t, tr, d)
	h.slack.AddUser(ann, "ann@contoso.com", "Ann Inviter")
	annEntra := h.tenant.AddUser(graphfake.User{DisplayName: "Ann Inviter", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com", UserType: "Member"})
	return &inviterRig{t: t, h: h, ann: annEntra}
}

// signIn has Ann be the one who signs in at the token service next.
func (r *inviterRig) signIn() {
	r.h.sts.SignIn(graphfake.SignedInUser{ObjectID: r.ann.ID, Username: "ann@contoso.com", Name: "Ann Inviter"})
}

// connect runs /invite-guest connect as Ann and signs her in through the
// link it answers with, in the browser.
func (r *inviterRig) connect() {
	r.t.Helper()
	h := r.h
	res, err := h.player.CommandWithTrigger(h.ctx, ann, bot.Command, "connect", h.slack.NewTriggerID())
	link := connectLinkRE.FindString(string(res.Body))
	if err != nil || link == "" {
		r.t.Fatalf("/invite-guest connect: %v %s", err, res.Body)
	}
	r.signIn()
	if status, page := h.browse(r.t, link); status != http.StatusOK {
		r.t.Fatalf("connect: %d %s", status, page)
	}
}

// reconnect signs Ann in again through link and checks that email's
// invitation, which waited for it, is then sent once, as her.
func (r *inviterRig) reconnect(link, email string) {
	r.t.Helper()
	h := r.h
	if status, page := h.browse(r.t, link); status != http.StatusOK {
		r.t.Fatalf("reconnect: %d %s", status, page)
	}
	if err := h.slack.WaitFor(h.ctx, func() bool {
		return h.invitationFor(r.t, email).State == flows.StateNotified
	}); err != nil {
		r.t.Fatalf("not sent after reconnecting: %v", err)
	}
	r.sentAsAnn(email)
}

// invite submits the dialog for email as Ann and returns the DM that
// answers it.
func (r *inviterRig) invite(email string) string {
	r.t.Helper()
	h := r.h
	dms := len(h.dmsTo(ann))
	view := h.open(r.t, "")
	h.submit(r.t, view, inviteValues(email, "Guest", "slack_link"))
	return h.waitDM(r.t, dms+1)
}

// sentAsAnn checks that email's invitation is notified with no failure,
// sent once, by Ann.
func (r *inviterRig) sentAsAnn(email string) {
	r.t.Helper()
	if inv := r.h.invitationFor(r.t, email); inv.State != flows.StateNotified || inv.Failure != nil {
		r.t.Fatalf("%s: %s %+v", email, inv.State, inv.Failure)
	}
	n := 0
	for _, inv := range r.h.tenant.Invitations() {
		if inv.Body["invitedUserEmailAddress"] == email {
			n++
			if inv.InvitedBy != r.ann.ID {
				r.t.Fatalf("%s sent by %q, want Ann", email, inv.InvitedBy)
			}
		}
	}
	if n != 1 {
		r.t.Fatalf("%s invited %d times, want once", email, n)
	}
}

// grants checks the token service's count of sign-ins (authorization
// codes redeemed) and of refreshes granted of those asked for.
func (r *inviterRig) grants(wantCodes, wantRefreshes, wantRequests int) {
	r.t.Helper()
	codes, refreshes := r.h.sts.Grants()
	if asked := r.h.sts.RefreshRequests(); codes != wantCodes || refreshes != wantRefreshes || asked != wantRequests {
		r.t.Fatalf("token service: %d sign-ins, %d refreshes granted of %d asked; want %d, %d of %d",
			codes, refreshes, asked, wantCodes, wantRefreshes, wantRequests)
	}
}

// browse opens u in a browser-like client (cookies, redirects followed,
// the STS's certificate trusted) and returns the last page.
func (h *harness) browse(t *testing.T, u string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: h.sts.Client().Transport}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// connectLink waits for the n-th DM to Ann and returns the connect link in it.
func (h *harness) connectLink(t *testing.T, n int) string {
	t.Helper()
	dm := h.waitDM(t, n)
	link := connectLinkRE.FindString(dm)
	if link == "" || !strings.Contains(dm, "Connect your Microsoft account") {
		t.Fatalf("DM %d has no connect link: %s", n, dm)
	}
	return link
}

func (h *harness) invitationFor(t *testing.T, email string) *flows.Invitation {
	t.Helper()
	h.app.svc.Wait()
	invs, err := h.app.db.Invitations(h.ctx, flows.InvitationFilter{Emails: []string{email}})
	if err != nil || len(invs) != 1 {
		t.Fatalf("invitations for %s: %v, %v", email, invs, err)
	}
	return invs[0]
}

func TestE2EInviteAsInviter(t *testing.T) {
	for name, tr := range map[string]transport{"HTTP": overHTTP, "SocketMode": overSocket} {
		t.Run(name, func(t *testing.T) {
			h, annEntra := startAsInviter(t, tr, "inviter", 0)
			testInviteAsInviter(t, h, annEntra)
		})
	}
}

// Ensure a person who has not connected gets a connect link, signs in
// through invitebot's own pages, and their waiting invitation is then sent
// as them, once; everything else stays with the app's token; no secret
// the token service issued reaches the log or Slack.
func testInviteAsInviter(t *testing.T, h *harness, annEntra graphfake.User) {
	view := h.open(t, "bob@fabrikam.com Bob")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob", "slack_link"))
	link := h.connectLink(t, 1)
	if inv := h.invitationFor(t, "bob@fabrikam.com"); inv.State != flows.StateAwaitingSignIn {
		t.Fatalf("state = %s, want awaiting_sign_in", inv.State)
	}
	if n := len(h.tenant.Invitations()); n != 0 {
		t.Fatalf("%d invitations sent before Ann connected", n)
	}
	if !strings.Contains(h.viewText(view), "Connect your Microsoft account") {
		t.Errorf("the dialog does not offer to connect: %s", h.viewText(view))
	}

	h.sts.SignIn(graphfake.SignedInUser{ObjectID: annEntra.ID, Username: "ann@contoso.com", Name: "Ann Inviter"})
	status, page := h.browse(t, link)
	if status != http.StatusOK || !strings.Contains(page, "Connected as Ann Inviter (ann@contoso.com). You can close this tab.") {
		t.Fatalf("callback page = %d %s", status, page)
	}
	if err := h.slack.WaitFor(h.ctx, func() bool { return len(h.dmsTo(ann)) >= 3 }); err != nil {
		t.Fatalf("DMs after connecting: %v", err)
	}
	inv := h.invitationFor(t, "bob@fabrikam.com")
	if inv.State != flows.StateNotified {
		t.Fatalf("state = %s (%+v), want notified", inv.State, inv.Failure)
	}
	sent := h.tenant.Invitations()
	if len(sent) != 1 || sent[0].InvitedBy != annEntra.ID {
		t.Fatalf("invitations = %+v, want one sent by Ann (%s)", sent, annEntra.ID)
	}
	for _, r := range h.tenant.Requests() {
		if r.Caller != "" && !(r.Method == "POST" && strings.HasSuffix(r.Path, "/invitations")) {
			t.Errorf("%s %s used Ann's token; only POST /invitations may", r.Method, r.Path)
		}
	}
	found := false
	for _, ev := range inv.History {
		found = found || (ev.Action == "invited" && strings.Contains(ev.Detail, "as inviter "+annEntra.ID))
	}
	if !found {
		t.Errorf("the history does not say who sent it: %+v", inv.History)
	}

	// The next invitation goes out as Ann at once.
	view = h.open(t, "carol@fabrikam.com Carol")
	h.submit(t, view, inviteValues("carol@fabrikam.com", "Carol", "slack_link"))
	h.waitDM(t, 4)
	if inv := h.invitationFor(t, "carol@fabrikam.com"); inv.State != flows.StateNotified {
		t.Fatalf("second invitation: %s", inv.State)
	}
	if sent := h.tenant.Invitations(); len(sent) != 2 || sent[1].InvitedBy != annEntra.ID {
		t.Errorf("second invitation sent by %q", sent[len(sent)-1].InvitedBy)
	}
	if codes, _ := h.sts.Grants(); codes != 1 {
		t.Errorf("%d sign-ins, want 1", codes)
	}
	var slackText strings.Builder
	for _, m := range h.slack.Messages() {
		slackText.WriteString(m.Text + string(m.Blocks))
	}
	for _, s := range h.sts.Secrets() {
		if strings.Contains(h.logs.String(), s) || strings.Contains(slackText.String(), s) {
			t.Fatalf("a secret the token service issued reached the log or Slack")
		}
	}
}

// Ensure refusals: another person's account links nothing; Entra refusing
// the person fails the invitation with their refusal and no guest; a
// revoked refresh token makes the invitation wait for a reconnect, after
// which it is sent once (the token is refreshed at each use here).
func TestE2EInviteAsInviterRefusals(t *testing.T) {
	rig := startInviterRig(t, overHTTP, deps{userTokenLifetime: time.Minute})
	h, annEntra := rig.h, rig.ann
	eve := h.tenant.AddUser(graphfake.User{DisplayName: "Eve", Mail: "eve@contoso.com", UserPrincipalName: "eve@contoso.com", UserType: "Member"})
	r, err := h.player.CommandWithTrigger(h.ctx, ann, bot.Command, "connect", h.slack.NewTriggerID())
	link := connectLinkRE.FindString(string(r.Body))
	if err != nil || link == "" {
		t.Fatalf("/invite-guest connect: %v %s", err, r.Body)
	}
	h.sts.SignIn(graphfake.SignedInUser{ObjectID: eve.ID, Username: "eve@contoso.com", Name: "Eve"})
	if status, page := h.browse(t, link); status != http.StatusForbidden || !strings.Contains(page, "That is not your account") {
		t.Fatalf("Eve's account for Ann: %d %s", status, page)
	}
	if status, page := h.browse(t, link); status != http.StatusGone {
		t.Fatalf("link used twice: %d %s", status, page)
	}

	rig.connect() // Ann's own account
	dms := len(h.dmsTo(ann))

	h.tenant.SetAllowInvitesFrom(graphfake.InvitesFromAdminsAndGuestInviters)
	view := h.open(t, "")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob", "slack_link"))
	dm := h.waitDM(t, dms+1)
	if !strings.Contains(dm, "Microsoft Entra refused: you may not invite guests in this tenant (ask an admin for the Guest Inviter role)") ||
		!strings.Contains(dm, "Insufficient privileges") {
		t.Fatalf("refusal DM = %s", dm)
	}
	if inv := h.invitationFor(t, "bob@fabrikam.com"); inv.State != flows.StateFailed || inv.Failure.Code != flows.FailInviterRefused {
		t.Fatalf("refused invitation: %s %+v", inv.State, inv.Failure)
	}
	for _, u := range h.tenant.Users() {
		if u.Mail == "bob@fabrikam.com" {
			t.Fatal("a guest was created although Entra refused Ann")
		}
	}

	h.tenant.AssignRole(annEntra.ID, graphfake.RoleGuestInviter)
	h.sts.RevokeSignIns(annEntra.ID)
	view = h.open(t, "")
	h.submit(t, view, inviteValues("carol@fabrikam.com", "Carol", "slack_link"))
	dm = h.waitDM(t, dms+2)
	if !strings.Contains(dm, "Reconnect your Microsoft account") {
		t.Fatalf("after revocation: %s", dm)
	}
	if inv := h.invitationFor(t, "carol@fabrikam.com"); inv.State != flows.StateAwaitingSignIn {
		t.Fatalf("after revocation: %s", inv.State)
	}
	// A restart while it waits loses nothing.
	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	if err := h.startApp(); err != nil {
		t.Fatal(err)
	}
	if status, _ := h.browse(t, connectLinkRE.FindString(dm)); status != http.StatusOK {
		t.Fatalf("reconnect: %d", status)
	}
	if err := h.slack.WaitFor(h.ctx, func() bool {
		inv := h.invitationFor(t, "carol@fabrikam.com")
		return inv.State == flows.StateNotified
	}); err != nil {
		t.Fatalf("not sent after reconnecting: %v", err)
	}
	n := 0
	for _, inv := range h.tenant.Invitations() {
		if inv.Body["invitedUserEmailAddress"] == "carol@fabrikam.com" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("Carol invited %d times, want once", n)
	}
}

// Ensure doctor checks the invite-as settings and names the redirect URI.
func TestDoctorInviteAs(t *testing.T) {
	h := start(t)
	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	env := doctorEnv(t, h, emuPortal)
	out, err := h.doctor(t, env, h.sts)
	if err != nil || !strings.Contains(out, "ok    invite as            app:") {
		t.Fatalf("app mode: %v\n%s", err, out)
	}
	env["INVITEBOT_INVITE_AS"] = "inviter"
	env["INVITEBOT_PUBLIC_URL"] = "https://invitebot.contoso.com"
	env["INVITEBOT_TOKEN_KEY"] = emuTokenKey
	out, err = h.doctor(t, env, h.sts)
	if err != nil {
		t.Fatalf("inviter mode: %v\n%s", err, out)
	}
	for _, want := range []string{"ok    redirect uri         https://invitebot.contoso.com/auth/callback",
		"ok    token key", "ok    sign-in              inviters sign in at " + h.sts.URL + "/" + emuTenant + "/oauth2/v2.0/authorize",
		"https://graph.microsoft.com/User.Invite.All"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, emuTokenKey) {
		t.Error("doctor printed the token key")
	}
	env["INVITEBOT_TOKEN_KEY"] = "c2hvcnQ="
	env["INVITEBOT_PUBLIC_URL"] = "http://invitebot.contoso.com"
	out, err = h.doctor(t, env, h.sts)
	if err == nil || !strings.Contains(out, "FAIL  environment          INVITEBOT_TOKEN_KEY: 5 bytes; want 32") ||
		!strings.Contains(out, "INVITEBOT_PUBLIC_URL: must be https://") {
		t.Errorf("bad settings: %v\n%s", err, out)
	}
}

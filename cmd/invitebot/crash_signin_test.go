package main

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
)

// With INVITEBOT_INVITE_AS=inviter, an invitation is sent once and its
// outcome told once however the bot is killed around the sign-in: while the
// invitation waits in awaiting_sign_in (the connect link still works after
// the restart), once the callback stored the tokens and the resumed
// invitation is on its way to Entra, and once Entra created the invitation
// but its answer never came back.
func TestCrashInviteAsInviter(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	r := newCrashRig(t)
	r.env = append(r.env, "INVITEBOT_INVITE_AS=inviter", "INVITEBOT_PUBLIC_URL=http://"+r.addr, "INVITEBOT_TOKEN_KEY="+emuTokenKey)
	var annEntra graphfake.User
	for _, u := range r.tenant.Users() {
		if u.Mail == "ann@contoso.com" {
			annEntra = u
		}
	}
	r.sts.SignIn(graphfake.SignedInUser{ObjectID: annEntra.ID, Username: "ann@contoso.com", Name: "Ann Inviter"})

	// invite submits the dialog for email and returns the connect link of
	// the DM that asks Ann to connect.
	invite := func(email, delivery string) string {
		t.Helper()
		dms := len(r.slack.DMs(ann))
		resp, view, err := r.player.Command(ctx, ann, bot.Command, email)
		if err != nil || resp.Status != http.StatusOK || view == "" {
			t.Fatalf("command: %v %d %s", err, resp.Status, resp.Body)
		}
		if _, err := r.player.Submit(ctx, ann, view, inviteValues(email, "Guest", delivery, emuPortal)); err != nil {
			t.Fatal(err)
		}
		var link string
		if err := poll(ctx, func() bool {
			for _, m := range r.slack.DMs(ann)[dms:] {
				link = connectLinkRE.FindString(m.Text + string(m.Blocks))
				if link != "" {
					return true
				}
			}
			return false
		}); err != nil {
			t.Fatalf("%s: no connect link: %v; log tail:\n%s", email, err, tail(r.logs.String(), 3000))
		}
		return link
	}
	// connect signs Ann in through link (in the background: the child
	// may die before it answers).
	connect := func(link string) {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Transport: r.sts.Client().Transport, Timeout: 30 * time.Second}
		go func() {
			if resp, err := c.Get(link); err == nil {
				resp.Body.Close()
			}
		}()
	}
	fired := func(name string, tr *trap) {
		t.Helper()
		select {
		case <-tr.fired:
		case <-ctx.Done():
			t.Fatalf("%s: the kill point was never reached; log tail:\n%s", name, tail(r.logs.String(), 3000))
		}
	}
	restart := func() {
		r.start()
		r.healthy(ctx)
	}

	// Bob: killed while waiting for Ann, then again once she connected
	// and the invitation was on its way to Entra as her.
	restart()
	link := invite("bob@fabrikam.com", "slack_link")
	r.kill()
	if recs, _ := r.records(ctx); recs["bob@fabrikam.com"] == nil || recs["bob@fabrikam.com"].State != flows.StateAwaitingSignIn {
		t.Fatalf("bob at the first kill: %+v", recs["bob@fabrikam.com"])
	}
	restart()
	held := &trap{key: "POST /invitations", n: 1}
	r.hub.arm(held)
	connect(link)
	fired("bob", held)
	r.kill()
	if n := len(r.tenant.Invitations()); n != 0 {
		t.Fatalf("%d invitations reached Entra before the second kill", n)
	}
	restart()
	r.waitOutcome(ctx, "bob@fabrikam.com")

	// Carol: Ann disconnected; killed after Entra created the invitation
	// sent as Ann, before its answer arrived. Microsoft emails Carol, so
	// the retry finds her guest account instead of re-sending (with
	// slack_link a second POST is harmless and allowed: see flows.invite).
	if resp, err := r.player.CommandWithTrigger(ctx, ann, bot.Command, "disconnect", r.slack.NewTriggerID()); err != nil || resp.Status != http.StatusOK {
		t.Fatalf("disconnect: %v %+v", err, resp)
	}
	link = invite("carol@fabrikam.com", string(flows.DeliveryMicrosoftEmail))
	lost := &trap{key: "POST /invitations", n: 1, after: true}
	r.hub.arm(lost)
	connect(link)
	fired("carol", lost)
	r.kill()
	restart()
	r.waitOutcome(ctx, "carol@fabrikam.com")
	r.stop(ctx)

	recs, _ := r.records(ctx)
	dms := r.outcomeDMs()
	for _, email := range []string{"bob@fabrikam.com", "carol@fabrikam.com"} {
		posted := 0
		for _, i := range r.tenant.Invitations() {
			if i.Body["invitedUserEmailAddress"] == email {
				posted++
				if i.InvitedBy != annEntra.ID {
					t.Errorf("%s invited by %q, want Ann (%s)", email, i.InvitedBy, annEntra.ID)
				}
			}
		}
		if posted != 1 {
			t.Errorf("%s: %d invitations reached Entra, want 1", email, posted)
		}
		guests := 0
		for _, u := range r.tenant.Users() {
			if u.Mail == email {
				guests++
			}
		}
		if guests != 1 {
			t.Errorf("%s: %d guest accounts, want 1", email, guests)
		}
		if dms[email] != 1 {
			t.Errorf("%s: %d outcome DMs, want 1", email, dms[email])
		}
		// The DM goes out before its record: a stop right after it may
		// leave provisioned for the next start (told once all the same).
		if inv := recs[email]; inv == nil || (inv.State != flows.StateNotified && inv.State != flows.StateProvisioned) || inv.ObjectID == "" {
			t.Errorf("%s: record %+v", email, inv)
		}
	}
	if codes, _ := r.sts.Grants(); codes != 2 {
		t.Errorf("%d sign-ins, want 2 (one per connect)", codes)
	}
}

// waitOutcome waits for the outcome DM about email.
func (r *crashRig) waitOutcome(ctx context.Context, email string) {
	r.t.Helper()
	if err := poll(ctx, func() bool { return r.outcomeDMs()[email] > 0 }); err != nil {
		r.t.Fatalf("%s: no outcome DM after the restart: %v; log tail:\n%s", email, err, tail(r.logs.String(), 3000))
	}
}

package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
)

// Ensure Graph refusing the inviter's delegated token (401
// InvalidAuthenticationToken) while MSAL's cache still holds it for valid
// never fails the invitation: the token is refreshed once and the
// invitation sent once as the person, with no failure DM; and when the
// refresh token was revoked as well, the invitation waits for a reconnect
// and is then sent once. The emulators' clock moves two hours past the
// one-hour token's exp while MSAL's cache keeps the process's clock: the
// clocks disagree, as when a token ends early.
func TestE2EInviteAsInviterTokenRefused(t *testing.T) {
	c := &clock{}
	h := startWith(t, overHTTP, deps{pollInterval: -1, now: c.now, env: map[string]string{"INVITEBOT_INVITE_AS": "inviter"}})
	h.slack.AddUser(ann, "ann@contoso.com", "Ann Inviter")
	annEntra := h.tenant.AddUser(graphfake.User{DisplayName: "Ann Inviter", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com", UserType: "Member"})
	invite := func(email string) string {
		t.Helper()
		dms := len(h.dmsTo(ann))
		view := h.open(t, "")
		h.submit(t, view, inviteValues(email, "Guest", "slack_link"))
		return h.waitDM(t, dms+1)
	}
	sentAsAnn := func(email string) {
		t.Helper()
		if inv := h.invitationFor(t, email); inv.State != flows.StateNotified || inv.Failure != nil {
			t.Fatalf("%s: %s %+v", email, inv.State, inv.Failure)
		}
		n := 0
		for _, inv := range h.tenant.Invitations() {
			if inv.Body["invitedUserEmailAddress"] == email {
				n++
				if inv.InvitedBy != annEntra.ID {
					t.Fatalf("%s sent by %q, want Ann", email, inv.InvitedBy)
				}
			}
		}
		if n != 1 {
			t.Fatalf("%s invited %d times, want once", email, n)
		}
	}
	// posts checks the POST /invitations Graph received with Ann's token:
	// refused with 401 and taken.
	posts := func(wantRefused, wantTaken int) {
		t.Helper()
		refused, taken := 0, 0
		for _, r := range h.tenant.Requests() {
			if r.Method != http.MethodPost || r.Path != "/v1.0/invitations" || r.Caller != annEntra.ID {
				continue
			}
			switch r.Status {
			case http.StatusUnauthorized:
				refused++
			case http.StatusCreated:
				taken++
			default:
				t.Errorf("POST /invitations as Ann answered %d", r.Status)
			}
		}
		if refused != wantRefused || taken != wantTaken {
			t.Fatalf("POST /invitations as Ann: %d refused (401), %d taken; want %d, %d", refused, taken, wantRefused, wantTaken)
		}
	}
	grants := func(wantCodes, wantRefreshes, wantRequests int) {
		t.Helper()
		codes, refreshes := h.sts.Grants()
		if codes != wantCodes || refreshes != wantRefreshes || h.sts.RefreshRequests() != wantRequests {
			t.Fatalf("token service: %d sign-ins, %d refreshes granted of %d asked; want %d, %d of %d",
				codes, refreshes, h.sts.RefreshRequests(), wantCodes, wantRefreshes, wantRequests)
		}
	}
	noFailureDM := func() {
		t.Helper()
		for _, s := range []string{"Microsoft Entra refused", "Something went wrong", "Not connected"} {
			if n := h.dmsWith(s); n != 0 {
				t.Fatalf("%d DMs say %q", n, s)
			}
		}
	}

	r, err := h.player.CommandWithTrigger(h.ctx, ann, bot.Command, "connect", h.slack.NewTriggerID())
	link := connectLinkRE.FindString(string(r.Body))
	if err != nil || link == "" {
		t.Fatalf("/invite-guest connect: %v %s", err, r.Body)
	}
	h.sts.SignIn(graphfake.SignedInUser{ObjectID: annEntra.ID, Username: "ann@contoso.com", Name: "Ann Inviter"})
	if status, page := h.browse(t, link); status != http.StatusOK {
		t.Fatalf("connect: %d %s", status, page)
	}
	invite("bob@fabrikam.com")
	sentAsAnn("bob@fabrikam.com")
	grants(1, 0, 0)
	posts(0, 1)

	// (a) Graph's clock is two hours on: the cached token is past its exp
	// there, while MSAL holds it for valid 58 more minutes. Graph refuses
	// it once, one refresh, and the same POST goes again.
	c.advance(2 * time.Hour)
	invite("carol@fabrikam.com")
	sentAsAnn("carol@fabrikam.com")
	grants(1, 1, 1)
	posts(1, 2)
	noFailureDM()
	// The refreshed token serves the next one as it is.
	invite("dave@fabrikam.com")
	sentAsAnn("dave@fabrikam.com")
	grants(1, 1, 1)
	posts(1, 3)

	// (b) Two hours more (the refreshed token is past its exp for Graph,
	// not for MSAL), and Ann's sessions were revoked: the refresh after
	// the 401 is refused (AADSTS50173), so the invitation waits and Ann
	// is asked to reconnect; nothing fails.
	c.advance(2 * time.Hour)
	h.sts.RevokeSignIns(annEntra.ID)
	dm := invite("erin@fabrikam.com")
	grants(1, 1, 2)
	posts(2, 3)
	relink := connectLinkRE.FindString(dm)
	if !strings.Contains(dm, "Reconnect your Microsoft account") || relink == "" {
		t.Fatalf("after the refresh was refused: %s", dm)
	}
	if inv := h.invitationFor(t, "erin@fabrikam.com"); inv.State != flows.StateAwaitingSignIn || inv.Failure != nil {
		t.Fatalf("after the refresh was refused: %s %+v", inv.State, inv.Failure)
	}
	noFailureDM()
	if status, page := h.browse(t, relink); status != http.StatusOK {
		t.Fatalf("reconnect: %d %s", status, page)
	}
	if err := h.slack.WaitFor(h.ctx, func() bool {
		return h.invitationFor(t, "erin@fabrikam.com").State == flows.StateNotified
	}); err != nil {
		t.Fatalf("not sent after reconnecting: %v", err)
	}
	sentAsAnn("erin@fabrikam.com")
	grants(2, 1, 2)
	posts(2, 4)
	noFailureDM()
	for _, s := range h.sts.Secrets() {
		if strings.Contains(h.logs.String(), s) {
			t.Fatal("the log holds a secret the token service issued")
		}
	}
}

package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
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
	rig := startInviterRig(t, overHTTP, deps{now: c.now})
	h, annEntra := rig.h, rig.ann
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
	noFailureDM := func() {
		t.Helper()
		for _, s := range []string{"Microsoft Entra refused", "Something went wrong", "Not connected"} {
			if n := h.dmsWith(s); n != 0 {
				t.Fatalf("%d DMs say %q", n, s)
			}
		}
	}

	rig.connect()
	rig.invite("bob@fabrikam.com")
	rig.sentAsAnn("bob@fabrikam.com")
	rig.grants(1, 0, 0)
	posts(0, 1)

	// (a) Graph's clock is two hours on: the cached token is past its exp
	// there, while MSAL holds it for valid 58 more minutes. Graph refuses
	// it once, one refresh, and the same POST goes again.
	c.advance(2 * time.Hour)
	rig.invite("carol@fabrikam.com")
	rig.sentAsAnn("carol@fabrikam.com")
	rig.grants(1, 1, 1)
	posts(1, 2)
	noFailureDM()
	// The refreshed token serves the next one as it is.
	rig.invite("dave@fabrikam.com")
	rig.sentAsAnn("dave@fabrikam.com")
	rig.grants(1, 1, 1)
	posts(1, 3)

	// (b) Two hours more (the refreshed token is past its exp for Graph,
	// not for MSAL), and Ann's sessions were revoked: the refresh after
	// the 401 is refused (AADSTS50173), so the invitation waits and Ann
	// is asked to reconnect; nothing fails.
	c.advance(2 * time.Hour)
	h.sts.RevokeSignIns(annEntra.ID)
	dm := rig.invite("erin@fabrikam.com")
	rig.grants(1, 1, 2)
	posts(2, 3)
	relink := connectLinkRE.FindString(dm)
	if !strings.Contains(dm, "Reconnect your Microsoft account") || relink == "" {
		t.Fatalf("after the refresh was refused: %s", dm)
	}
	if inv := h.invitationFor(t, "erin@fabrikam.com"); inv.State != flows.StateAwaitingSignIn || inv.Failure != nil {
		t.Fatalf("after the refresh was refused: %s %+v", inv.State, inv.Failure)
	}
	noFailureDM()
	rig.reconnect(relink, "erin@fabrikam.com")
	rig.grants(2, 1, 2)
	posts(2, 4)
	noFailureDM()
	for _, s := range h.sts.Secrets() {
		if strings.Contains(h.logs.String(), s) {
			t.Fatal("the log holds a secret the token service issued")
		}
	}
}

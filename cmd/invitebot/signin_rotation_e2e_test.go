package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/signin"
)

// Ensure a token key rotation needs no new sign-in: connected under key A,
// restarted with INVITEBOT_TOKEN_KEY=B and INVITEBOT_TOKEN_KEY_PREVIOUS=A,
// the next invitation goes out as the person and their record is sealed
// again under B, which then works alone. The delegated access token lives
// one minute, inside MSAL's refresh margin: every invitation after the
// first refreshes it with the stored refresh token, never a new sign-in.
func TestE2EInviteAsInviterKeyRotation(t *testing.T) {
	h, annEntra := startAsInviter(t, overHTTP, "inviter", time.Minute)
	keyA := h.cfg.TokenKey
	rawA, _ := config.DecodeTokenKey(keyA.Reveal())
	rawB := bytes.Repeat([]byte{0xb0}, 32)
	sealedUnder := func() string {
		t.Helper()
		rec, err := h.app.db.(flows.SignInStore).SignInRecord(h.ctx, "conn/"+ann)
		if err != nil || len(rec) < 5 {
			t.Fatalf("Ann's stored sign-in: %v (%d bytes)", err, len(rec))
		}
		return hex.EncodeToString(rec[1:5])
	}
	invite := func(email string) {
		t.Helper()
		dms := len(h.dmsTo(ann))
		view := h.open(t, "")
		h.submit(t, view, inviteValues(email, "Guest", "slack_link"))
		h.waitDM(t, dms+1)
		if inv := h.invitationFor(t, email); inv.State != flows.StateNotified {
			t.Fatalf("%s: %s %+v", email, inv.State, inv.Failure)
		}
		sent := h.tenant.Invitations()
		if last := sent[len(sent)-1]; last.Body["invitedUserEmailAddress"] != email || last.InvitedBy != annEntra.ID {
			t.Fatalf("%s: last invitation %v sent by %q, want Ann", email, last.Body["invitedUserEmailAddress"], last.InvitedBy)
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
	if got := sealedUnder(); got != signin.KeyID(rawA) {
		t.Fatalf("sealed under %s, want key A %s", got, signin.KeyID(rawA))
	}

	restartWith := func(current, previous config.Secret) {
		t.Helper()
		if err := h.stopApp(); err != nil {
			t.Fatal(err)
		}
		h.cfg.TokenKey, h.cfg.TokenKeyPrevious = current, previous
		if err := h.startApp(); err != nil {
			t.Fatal(err)
		}
	}
	restartWith(config.Secret(base64.StdEncoding.EncodeToString(rawB)), keyA)
	if got := sealedUnder(); got != signin.KeyID(rawA) {
		t.Fatalf("re-sealed before use: %s", got)
	}
	invite("carol@fabrikam.com")
	if got := sealedUnder(); got != signin.KeyID(rawB) {
		t.Fatalf("after use under the rotated keys: sealed under %s, want key B %s", got, signin.KeyID(rawB))
	}

	restartWith(h.cfg.TokenKey, "")
	invite("dave@fabrikam.com")
	codes, refreshes := h.sts.Grants()
	if codes != 1 {
		t.Errorf("%d sign-ins, want 1", codes)
	}
	if refreshes < 2 {
		t.Errorf("%d refreshes, want one per invitation after the first at least", refreshes)
	}
	if n := len(h.tenant.Invitations()); n != 3 {
		t.Errorf("%d invitations, want 3", n)
	}
}

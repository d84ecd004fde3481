package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/signin"
)

// Ensure a token key rotation needs no new sign-in: connected under key A,
// restarted with INVITEBOT_TOKEN_KEY=B and INVITEBOT_TOKEN_KEY_PREVIOUS=A,
// the next invitation goes out as the person and their record is sealed
// again under B, which then works alone. The delegated access token lives
// one minute, inside MSAL's refresh margin: every invitation after the
// first refreshes it with the stored refresh token, never a new sign-in.
func TestE2EInviteAsInviterKeyRotation(t *testing.T) {
	rig := startInviterRig(t, overHTTP, deps{userTokenLifetime: time.Minute})
	h := rig.h
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
	// invite has email invited as Ann and checks it was sent once, as her.
	invite := func(email string) {
		t.Helper()
		rig.invite(email)
		rig.sentAsAnn(email)
	}

	rig.connect()
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

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/signin"
)

// elapse moves time forward by d for the emulated world and for MSAL: the
// emulators' and flows' clock (c), and the person's stored MSAL token
// cache. MSAL decides a cached access token has expired by the process's
// clock (time.Now, with no hook), against the cached_at and expires_on it
// wrote when the token arrived; shifting those back by d is what MSAL
// would see had the process's clock moved forward by d. Nothing else in
// the record changes (the refresh token has no expiry in the cache: only
// the token service knows it). It returns the access token that was
// cached and its expires_on after the shift.
func (h *harness) elapse(t *testing.T, c *clock, slackUser string, d time.Duration) (string, time.Time) {
	t.Helper()
	c.advance(d)
	st := h.app.db.(flows.SignInStore)
	cur, prev := h.cfg.TokenKeys()
	sealer, err := signin.NewSealer(cur, prev)
	if err != nil {
		t.Fatal(err)
	}
	owner := "conn/" + slackUser
	sealed, err := st.SignInRecord(h.ctx, owner)
	if err != nil {
		t.Fatalf("%s's stored sign-in: %v", slackUser, err)
	}
	plain, _, err := sealer.Open(owner, sealed)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]json.RawMessage
	var raw []byte
	if err := json.Unmarshal(plain, &rec); err != nil || json.Unmarshal(rec["cache"], &raw) != nil {
		t.Fatalf("the stored sign-in has no MSAL cache: %v", err)
	}
	var cache map[string]json.RawMessage
	var ats map[string]map[string]any
	if err := json.Unmarshal(raw, &cache); err != nil || json.Unmarshal(cache["AccessToken"], &ats) != nil || len(ats) != 1 {
		t.Fatalf("MSAL's cache holds %d access tokens (%v), want 1", len(ats), err)
	}
	var tok string
	var expires time.Time
	for _, at := range ats {
		tok, _ = at["secret"].(string)
		for _, f := range []string{"cached_at", "expires_on", "extended_expires_on", "refresh_on"} {
			s, ok := at[f].(string)
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				t.Fatalf("MSAL's %s = %q", f, s)
			}
			at[f] = strconv.FormatInt(n-int64(d/time.Second), 10)
			if f == "expires_on" {
				expires = time.Unix(n-int64(d/time.Second), 0)
			}
		}
	}
	if tok == "" || expires.IsZero() {
		t.Fatal("MSAL's cached access token has no secret or expires_on")
	}
	cache["AccessToken"], _ = json.Marshal(ats)
	raw, _ = json.Marshal(cache)
	rec["cache"], _ = json.Marshal(raw)
	plain, _ = json.Marshal(rec)
	if err := st.PutSignInRecord(h.ctx, owner, sealer.Seal(owner, plain), time.Time{}); err != nil {
		t.Fatal(err)
	}
	return tok, expires
}

// Ensure a delegated access token that really expired is refused by
// Graph and replaced with the stored refresh token, without a new
// sign-in; and a refresh token past its inactivity lifetime makes the next
// invitation wait for a reconnect, after which it is sent once. Tokens
// last the usual hour (outside MSAL's 5-minute refresh margin), and the
// emulated Graph checks their exp against the emulators' clock.
func TestE2EInviteAsInviterTokenExpiry(t *testing.T) {
	c := &clock{}
	rig := startInviterRig(t, overHTTP, deps{now: c.now})
	h := rig.h

	rig.connect()
	rig.invite("bob@fabrikam.com")
	rig.sentAsAnn("bob@fabrikam.com")
	rig.grants(1, 0, 0) // the one-hour token from the sign-in

	// Two hours later the access token is past its exp, for Graph and MSAL.
	old, expires := h.elapse(t, c, ann, 2*time.Hour)
	if !expires.Before(time.Now().Add(-50 * time.Minute)) {
		t.Fatalf("MSAL's cached token expires %s: not expired beyond the refresh margin", expires)
	}
	if status, body := postInvitation(t, h, old); status != http.StatusUnauthorized ||
		!strings.Contains(body, `"InvalidAuthenticationToken"`) || !strings.Contains(body, "the token is expired") {
		t.Fatalf("the expired token at Graph: %d %s", status, body)
	}
	rig.invite("carol@fabrikam.com")
	rig.sentAsAnn("carol@fabrikam.com")
	rig.grants(1, 1, 1)
	// The refreshed token serves the next one as it is (one hour again).
	rig.invite("dave@fabrikam.com")
	rig.sentAsAnn("dave@fabrikam.com")
	rig.grants(1, 1, 1)
	if n := len(h.sts.AuthorizeRequests()); n != 1 {
		t.Errorf("%d sign-ins at the token service, want 1", n)
	}

	// 91 days on the refresh token has expired from disuse (AADSTS700082):
	// the next invitation waits and Ann is asked to reconnect.
	h.elapse(t, c, ann, 91*24*time.Hour)
	dm := rig.invite("erin@fabrikam.com")
	rig.grants(1, 1, 2)
	relink := connectLinkRE.FindString(dm)
	if !strings.Contains(dm, "Reconnect your Microsoft account") || relink == "" {
		t.Fatalf("after the refresh token expired: %s", dm)
	}
	if inv := h.invitationFor(t, "erin@fabrikam.com"); inv.State != flows.StateAwaitingSignIn {
		t.Fatalf("after the refresh token expired: %s %+v", inv.State, inv.Failure)
	}
	if n := len(h.tenant.Invitations()); n != 3 {
		t.Fatalf("%d invitations sent, want 3 (Erin's waits)", n)
	}
	rig.reconnect(relink, "erin@fabrikam.com")
	rig.grants(2, 1, 2)
}

// postInvitation sends POST /invitations to the emulated Graph with tok,
// as a client holding that token would.
func postInvitation(t *testing.T, h *harness, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(h.ctx, http.MethodPost, h.graph.URL+"/invitations",
		strings.NewReader(`{"invitedUserEmailAddress":"mallory@fabrikam.com","inviteRedirectUrl":"https://myapplications.microsoft.com"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

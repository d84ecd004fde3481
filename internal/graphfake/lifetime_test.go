package graphfake

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// userGrant posts a user grant (authorization_code or refresh_token) to
// the STS's token endpoint and returns the status and the JSON answer.
func userGrant(t *testing.T, s *STS, form url.Values) (int, map[string]any) {
	t.Helper()
	form.Set("client_id", "cid")
	form.Set("client_secret", "sec")
	resp, err := s.Client().PostForm(s.URL+"/tid/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("token answer is not JSON: %s", raw)
	}
	return resp.StatusCode, out
}

// signInCode runs the authorize request as the signed-in user and returns
// the authorization code of the redirect.
func signInCode(t *testing.T, s *STS) string {
	t.Helper()
	c := s.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	q := url.Values{"client_id": {"cid"}, "response_type": {"code"}, "redirect_uri": {"https://app/cb"},
		"scope": {"openid offline_access https://graph.microsoft.com/User.Invite.All"}, "state": {"st"}}
	resp, err := c.Get(s.URL + "/tid/oauth2/v2.0/authorize?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code")
}

// Ensure delegated tokens carry iat, nbf and exp from the STS's clock, the
// tenant (on the same clock) refuses one past its exp as Graph does (401
// InvalidAuthenticationToken with a WWW-Authenticate challenge), the
// refresh token gets a new one, and a refresh token unused past its
// inactivity lifetime answers invalid_grant AADSTS700082.
func TestDelegatedTokenLifetime(t *testing.T) {
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	sts := NewSTS(STSConfig{TenantID: "tid", ClientID: "cid", ClientSecret: "sec", Now: clk.Now, RefreshTokenLifetime: 90 * 24 * time.Hour})
	t.Cleanup(sts.Close)
	tn := NewTenant(TenantConfig{ValidToken: sts.ValidToken, Now: clk.Now})
	ann := tn.AddUser(User{DisplayName: "Ann", UserPrincipalName: "ann@contoso.com", UserType: "Member"})
	s := NewServer(tn)
	t.Cleanup(s.Close)
	sts.SignIn(SignedInUser{ObjectID: ann.ID, Username: "ann@contoso.com", Name: "Ann"})

	status, tok := userGrant(t, sts, url.Values{"grant_type": {"authorization_code"}, "code": {signInCode(t, sts)}, "redirect_uri": {"https://app/cb"}})
	if status != 200 || tok["expires_in"] != float64(3600) {
		t.Fatalf("code grant: %d %v", status, tok)
	}
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	cl := parseClaimsMap(t, at)
	issued := clk.Now().Unix()
	if cl["iat"] != float64(issued) || cl["nbf"] != float64(issued) || cl["exp"] != float64(issued+3600) {
		t.Fatalf("claims iat %v nbf %v exp %v; want %d, %d, %d", cl["iat"], cl["nbf"], cl["exp"], issued, issued, issued+3600)
	}
	invite := func(tok, email string) call {
		return do(t, s, tok, "POST", "/invitations", `{"invitedUserEmailAddress":"`+email+`","inviteRedirectUrl":"https://x"}`)
	}
	clk.Add(59 * time.Minute)
	if c := invite(at, "bob@fabrikam.com"); c.status != 201 {
		t.Fatalf("a minute before exp: %d %v", c.status, c.body)
	}
	clk.Add(time.Minute)
	c := invite(at, "carol@fabrikam.com")
	if c.status != 401 || graphErr(t, c) != "InvalidAuthenticationToken" ||
		c.body["error"].(map[string]any)["message"] != "Lifetime validation failed, the token is expired." ||
		!strings.HasPrefix(c.header.Get("WWW-Authenticate"), `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize"`) {
		t.Fatalf("at exp: %d %v %q", c.status, c.body, c.header.Get("WWW-Authenticate"))
	}
	if n := len(tn.Invitations()); n != 1 {
		t.Fatalf("%d invitations; the expired token sent one", n)
	}

	status, tok = userGrant(t, sts, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if status != 200 {
		t.Fatalf("refresh: %d %v", status, tok)
	}
	if c := invite(tok["access_token"].(string), "carol@fabrikam.com"); c.status != 201 {
		t.Fatalf("refreshed token: %d %v", c.status, c.body)
	}
	if sent := tn.Invitations(); sent[1].InvitedBy != ann.ID {
		t.Errorf("sent by %q, want Ann", sent[1].InvitedBy)
	}

	// Inactivity: each refresh token lives 90 days from its issue.
	rt = tok["refresh_token"].(string)
	clk.Add(90*24*time.Hour - time.Second)
	status, tok = userGrant(t, sts, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if status != 200 {
		t.Fatalf("refresh a second before the inactivity lifetime: %d %v", status, tok)
	}
	rt = tok["refresh_token"].(string)
	clk.Add(90 * 24 * time.Hour)
	status, tok = userGrant(t, sts, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	desc, _ := tok["error_description"].(string)
	if status != 400 || tok["error"] != "invalid_grant" || !strings.HasPrefix(desc, "AADSTS700082: The refresh token has expired due to inactivity.") ||
		!strings.Contains(desc, "was inactive for 90.00:00:00.") || tok["error_codes"].([]any)[0] != float64(700082) {
		t.Fatalf("refresh past the inactivity lifetime: %d %v", status, tok)
	}
	if _, refreshes := sts.Grants(); refreshes != 2 || sts.RefreshRequests() != 3 {
		t.Errorf("refreshes: %d granted of %d requested; want 2 of 3", refreshes, sts.RefreshRequests())
	}
}

func parseClaimsMap(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatal("not a JWT")
	}
	var m map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

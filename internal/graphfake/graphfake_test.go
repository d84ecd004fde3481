package graphfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

type call struct {
	status int
	header http.Header
	body   map[string]any
}

func do(t *testing.T, s *Server, token, method, path, body string) call {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	c := call{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %s", method, path, raw)
		}
	}
	return c
}

// graphErr returns error.code of a Graph error body, checking its shape.
func graphErr(t *testing.T, c call) string {
	t.Helper()
	e, _ := c.body["error"].(map[string]any)
	inner, _ := e["innerError"].(map[string]any)
	if e == nil || e["message"] == "" || inner["request-id"] == "" || inner["date"] == nil {
		t.Errorf("not a Graph error body: %v", c.body)
	}
	code, _ := e["code"].(string)
	return code
}

func newServer(t *testing.T) (*Tenant, *Server) {
	tn := NewTenant(TenantConfig{ID: "tid", VerifiedDomains: []string{"contoso.com"}, ValidToken: func(s string) bool { return s == "good" }})
	s := NewServer(tn)
	t.Cleanup(s.Close)
	return tn, s
}

const invite = `{"invitedUserEmailAddress":"bob@fabrikam.com","inviteRedirectUrl":"https://x.example","sendInvitationMessage":false}`

func TestAuthAndErrors(t *testing.T) {
	_, s := newServer(t)
	for _, tok := range []string{"", "bad"} {
		if c := do(t, s, tok, "GET", "/organization", ""); c.status != 401 || graphErr(t, c) != "InvalidAuthenticationToken" {
			t.Errorf("token %q: %d %v", tok, c.status, c.body)
		}
	}
	if c := do(t, s, "good", "GET", "/nowhere", ""); c.status != 404 || graphErr(t, c) != "BadRequest" {
		t.Errorf("unknown route: %d %v", c.status, c.body)
	}
	c := do(t, s, "good", "GET", "/organization", "")
	orgs, _ := c.body["value"].([]any)
	if c.status != 200 || len(orgs) != 1 || !strings.Contains(fmt.Sprint(orgs[0]), "contoso.com") {
		t.Errorf("organization: %d %v", c.status, c.body)
	}
}

func TestInviteReplicationAndMembers(t *testing.T) {
	tn, s := newServer(t)
	g := tn.AddGroup("Partners")
	tn.SetReplicationDelay(2)
	c := do(t, s, "good", "POST", "/invitations", invite)
	user, _ := c.body["invitedUser"].(map[string]any)
	id, _ := user["id"].(string)
	if c.status != 201 || id == "" || !strings.HasPrefix(fmt.Sprint(c.body["inviteRedeemUrl"]), "https://login.microsoftonline.com/redeem?") {
		t.Fatalf("invite: %d %v", c.status, c.body)
	}
	if again := do(t, s, "good", "POST", "/invitations", invite); fmt.Sprint(again.body["invitedUser"]) != fmt.Sprint(user) {
		t.Errorf("re-invite returned another user: %v", again.body["invitedUser"])
	}
	ref := fmt.Sprintf(`{"@odata.id":"https://graph.microsoft.com/v1.0/directoryObjects/%s"}`, id)
	for i := range 2 { // not yet replicated
		if c := do(t, s, "good", "POST", "/groups/"+g+"/members/$ref", ref); c.status != 404 || graphErr(t, c) != "Request_ResourceNotFound" {
			t.Errorf("add %d: %d %v", i, c.status, c.body)
		}
	}
	if c := do(t, s, "good", "POST", "/groups/"+g+"/members/$ref", ref); c.status != 204 {
		t.Errorf("add after replication: %d %v", c.status, c.body)
	}
	c = do(t, s, "good", "POST", "/groups/"+g+"/members/$ref", ref)
	if code := graphErr(t, c); c.status != 400 || code != "Request_BadRequest" || !strings.Contains(fmt.Sprint(c.body), "already exist") {
		t.Errorf("add twice: %d %v", c.status, c.body)
	}
	if m := tn.GroupMembers(g); len(m) != 1 || m[0] != id {
		t.Errorf("members = %v", m)
	}
	for _, body := range []string{
		`{"invitedUserEmailAddress":"carol@contoso.com","inviteRedirectUrl":"https://x.example"}`,
		`{"invitedUserEmailAddress":"bob+x@fabrikam.com","inviteRedirectUrl":"https://x.example"}`,
		`{"inviteRedirectUrl":"https://x.example"}`,
	} {
		if c := do(t, s, "good", "POST", "/invitations", body); c.status != 400 || graphErr(t, c) != "BadRequest" {
			t.Errorf("%s: %d %v", body, c.status, c.body)
		}
	}
}

func TestFaults(t *testing.T) {
	tn, s := newServer(t)
	tn.Fail(RoutePostInvitations, 1, Throttled("1.5"))
	c := do(t, s, "good", "POST", "/invitations", invite)
	if c.status != 429 || c.header.Get("Retry-After") != "1.5" || graphErr(t, c) != "TooManyRequests" {
		t.Errorf("throttled: %d %q %v", c.status, c.header.Get("Retry-After"), c.body)
	}
	if len(tn.Invitations()) != 0 {
		t.Error("a throttled invitation took effect")
	}
	tn.Fail(RoutePostInvitations, 1, Fault{Status: 504, Code: "GatewayTimeout", Message: "lost", AfterEffect: true})
	if c := do(t, s, "good", "POST", "/invitations", invite); c.status != 504 || len(tn.Invitations()) != 1 {
		t.Errorf("lost answer: %d, %d invitations", c.status, len(tn.Invitations()))
	}
	tn.Fail("", -1, Unavailable())
	if c := do(t, s, "good", "GET", "/organization", ""); c.status != 503 {
		t.Errorf("every route unavailable: %d", c.status)
	}
	tn.Reset()
	if c := do(t, s, "good", "GET", "/organization", ""); c.status != 200 {
		t.Errorf("after reset: %d", c.status)
	}
}

func TestListUsersFilter(t *testing.T) {
	tn, s := newServer(t)
	a := tn.AddUser(User{DisplayName: "O'Brien", Mail: "o'brien@partner.example"})
	b := tn.AddUser(User{DisplayName: "Proxy", ProxyAddresses: []string{"SMTP:Proxy@Partner.example"}})
	tn.AddUser(User{DisplayName: "Other", Mail: "other@partner.example"})
	tests := []struct {
		filter string
		want   []string
	}{
		{`mail eq 'o''brien@partner.example'`, []string{a.ID}},
		{`mail eq 'nobody@x.com' or proxyAddresses/any(p:p eq 'smtp:proxy@partner.example')`, []string{b.ID}},
		{`otherMails/any(m:m eq 'x@y.z')`, nil},
	}
	for _, tt := range tests {
		c := do(t, s, "good", "GET", "/users?$filter="+url.QueryEscape(tt.filter), "")
		vals, _ := c.body["value"].([]any)
		var got []string
		for _, v := range vals {
			got = append(got, v.(map[string]any)["id"].(string))
		}
		if c.status != 200 || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: %d %v, want %v", tt.filter, c.status, got, tt.want)
		}
	}
	if c := do(t, s, "good", "GET", "/users?$filter="+url.QueryEscape("startswith(mail,'a')"), ""); c.status != 400 || graphErr(t, c) != "Request_UnsupportedQuery" {
		t.Errorf("unsupported filter: %d %v", c.status, c.body)
	}
}

func TestParseFilter(t *testing.T) {
	for _, bad := range []string{"mail eq 'open", "mail eq 'a' and mail eq 'b'", "otherMails/any(m:m eq 'a'", "displayName eq 'x'"} {
		if _, err := ParseFilter(bad); err == nil {
			t.Errorf("ParseFilter(%q) accepted", bad)
		}
	}
	cs, err := ParseFilter(`userPrincipalName eq 'a''b' or otherMails/any(x:x eq 'c')`)
	if err != nil || fmt.Sprint(cs) != "[{userPrincipalName a'b} {otherMails c}]" {
		t.Errorf("ParseFilter = %v, %v", cs, err)
	}
}

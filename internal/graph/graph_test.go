package graph_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graph"
	"github.com/invitebot/invitebot/internal/graphfake"
)

const (
	tenantID = "9188040d-6c67-4c5b-b112-36a304b66dad"
	clientID = "22222222-2222-2222-2222-222222222222"
	secret   = "s3cret"
)

type fixture struct {
	tenant *graphfake.Tenant
	sts    *graphfake.STS
	client *graph.Client
}

// newFixture runs the real azidentity client-secret flow against the TLS
// STS and the SDK against the in-memory tenant.
func newFixture(t *testing.T, clientSecret string) *fixture {
	t.Helper()
	return newFixtureWith(t, clientSecret, nil)
}

func TestDirectoryAgainstEmulator(t *testing.T) {
	f := newFixture(t, secret)
	ctx := t.Context()

	domains, err := f.client.VerifiedDomains(ctx)
	if err != nil || strings.Join(domains, ",") != "contoso.com,contoso.onmicrosoft.com" {
		t.Fatalf("VerifiedDomains = %v, %v", domains, err)
	}
	f.tenant.AddUser(graphfake.User{ID: "u1", DisplayName: "Ann", Mail: "o'brien@fabrikam.com"})
	f.tenant.AddUser(graphfake.User{ID: "u2", OtherMails: []string{"o'brien@fabrikam.com"}})
	f.tenant.AddUser(graphfake.User{ID: "u3", ProxyAddresses: []string{"SMTP:O'Brien@fabrikam.com"}})
	f.tenant.AddUser(graphfake.User{ID: "u4", Mail: "someone@fabrikam.com"})
	users, err := f.client.FindUsers(ctx, "o'brien@fabrikam.com", false)
	if err != nil || len(users) != 3 {
		t.Fatalf("FindUsers = %+v, %v; want u1, u2, u3", users, err)
	}

	gid := f.tenant.AddGroup("Portal")
	got, err := f.client.Invite(ctx, flows.Invite{Email: "bob@fabrikam.com", DisplayName: "Bob", RedirectURL: "https://app.example",
		Message: "Welcome", CC: "ann@contoso.com", UserType: flows.UserTypeGuest})
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID == "" || !strings.Contains(got.RedeemURL, "redeem") || got.Status != "PendingAcceptance" {
		t.Errorf("Invited = %+v", got)
	}
	body := f.tenant.Invitations()[0].Body
	if body["invitedUserEmailAddress"] != "bob@fabrikam.com" || body["inviteRedirectUrl"] != "https://app.example" ||
		body["sendInvitationMessage"] != false || body["invitedUserDisplayName"] != "Bob" || body["invitedUserType"] != "Guest" {
		t.Errorf("invitation body = %v", body)
	}
	info, _ := body["invitedUserMessageInfo"].(map[string]any)
	if info["customizedMessageBody"] != "Welcome" || !strings.Contains(toString(info["ccRecipients"]), "ann@contoso.com") {
		t.Errorf("invitedUserMessageInfo = %v", info)
	}
	if err := f.client.UpdateUser(ctx, got.UserID, flows.Attributes{CompanyName: "Fabrikam"}); err != nil {
		t.Fatal(err)
	}
	if u, _ := f.tenant.User(got.UserID); u.CompanyName != "Fabrikam" {
		t.Errorf("companyName = %q", u.CompanyName)
	}
	for range 2 { // the second add hits "already a member": success
		if err := f.client.AddGroupMember(ctx, gid, got.UserID); err != nil {
			t.Fatal(err)
		}
	}
	if m := f.tenant.GroupMembers(gid); len(m) != 1 || m[0] != got.UserID {
		t.Errorf("members = %v", m)
	}
	// Every Graph request carried a token from the STS, fetched once.
	for _, r := range f.tenant.Requests() {
		if !r.Authorization {
			t.Errorf("%s %s without a valid bearer token", r.Method, r.Path)
		}
	}
	if n := f.sts.TokenRequests(); n != 1 {
		t.Errorf("token requests = %d, want 1 (cached)", n)
	}
}

func TestErrorsAreTranslated(t *testing.T) {
	f := newFixture(t, secret)
	ctx := t.Context()
	inv := flows.Invite{Email: "bob@fabrikam.com", RedirectURL: "https://app.example"}

	f.tenant.Fail(graphfake.RoutePostInvitations, 1, graphfake.Throttled("2.5"))
	_, err := f.client.Invite(ctx, inv)
	var de *flows.DirectoryError
	if !errors.As(err, &de) || !de.Throttled() || de.RetryAfter != 2500*time.Millisecond {
		t.Fatalf("429: %#v, want throttled with Retry-After 2.5s", err)
	}
	if n := len(f.tenant.Requests()); n != 1 {
		t.Errorf("%d requests for a throttled invitation, want 1 (no SDK re-POST)", n)
	}
	f.tenant.Fail(graphfake.RoutePostInvitations, 1, graphfake.Fault{Status: 403, Code: "Authorization_RequestDenied", Message: "Insufficient privileges"})
	if _, err := f.client.Invite(ctx, inv); !errors.Is(err, flows.ErrForbidden) {
		t.Errorf("403: %v, want ErrForbidden", err)
	}
	f.tenant.Fail(graphfake.RoutePostInvitations, 1, graphfake.Unavailable())
	if _, err := f.client.Invite(ctx, inv); !errors.As(err, &de) || !de.Temporary() || !de.Ambiguous() {
		t.Errorf("503: %v, want temporary and ambiguous", err)
	}
	_, err = f.client.Invite(ctx, flows.Invite{Email: "bob+x@fabrikam.com", RedirectURL: "https://app.example"})
	if !errors.As(err, &de) || de.Status != 400 || !strings.Contains(de.Message, "invalid") {
		t.Errorf("400: %v, want Graph's message", err)
	}
	if err := f.client.UpdateUser(ctx, "missing", flows.Attributes{JobTitle: "x"}); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("PATCH unknown user: %v, want ErrNotFound", err)
	}
}

func TestWrongSecretIsAClearError(t *testing.T) {
	f := newFixture(t, "wrong")
	_, err := f.client.VerifiedDomains(t.Context())
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("err = %v, want the STS's invalid client secret error", err)
	}
	var de *flows.DirectoryError
	if !errors.As(err, &de) || de.Code != flows.CodeCredentialRejected || de.Temporary() {
		t.Errorf("err = %#v, want a final credential_rejected error (retrying cannot help)", err)
	}
}

func TestScopeFor(t *testing.T) {
	for base, want := range map[string]string{
		"https://graph.microsoft.com/v1.0":             "https://graph.microsoft.com/.default",
		"https://graph.microsoft.us/v1.0":              "https://graph.microsoft.us/.default",
		"https://microsoftgraph.chinacloudapi.cn/v1.0": "https://microsoftgraph.chinacloudapi.cn/.default",
		"https://127.0.0.1:8443/v1.0":                  "https://graph.microsoft.com/.default",
	} {
		u, _ := url.Parse(base)
		if got := graph.ScopeFor(u); got != want {
			t.Errorf("ScopeFor(%s) = %s, want %s", base, got, want)
		}
	}
}

func toString(v any) string {
	var sb strings.Builder
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			sb.WriteString(toString(e))
		}
	case map[string]any:
		for _, e := range x {
			sb.WriteString(toString(e))
		}
	case string:
		sb.WriteString(x)
	}
	return sb.String()
}

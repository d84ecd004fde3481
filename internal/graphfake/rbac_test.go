package graphfake

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"
)

// testToken mints an unsigned token with the given claims.
func testToken(t *testing.T, c Claims) string {
	t.Helper()
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(raw) + ".sig"
}

// clock is a settable tenant clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Ensure each route is refused with Graph's 403 unless the token carries
// one of its permissions, and that GET /domains lists unverified domains
// too (marked so).
func TestPermissionsPerRoute(t *testing.T) {
	tn := NewTenant(TenantConfig{VerifiedDomains: []string{"contoso.com"}, UnverifiedDomains: []string{"pending.contoso.com"}})
	s := NewServer(tn)
	t.Cleanup(s.Close)
	narrow := testToken(t, Claims{Roles: []string{"Domain.Read.All", "User.Read.All"}, OID: "sp1", IDTyp: "app"})
	if c := do(t, s, narrow, "GET", "/organization", ""); c.status != 403 || graphErr(t, c) != "Authorization_RequestDenied" {
		t.Errorf("GET /organization without Organization.Read.All: %d %v", c.status, c.body)
	}
	c := do(t, s, narrow, "GET", "/domains", "")
	vals, _ := c.body["value"].([]any)
	if c.status != 200 || len(vals) != 2 {
		t.Fatalf("GET /domains: %d %v", c.status, c.body)
	}
	if d := vals[1].(map[string]any); d["id"] != "pending.contoso.com" || d["isVerified"] != false {
		t.Errorf("unverified domain = %v", d)
	}
	if c := do(t, s, testToken(t, Claims{Roles: []string{"Organization.Read.All"}}), "GET", "/domains", ""); c.status != 403 {
		t.Errorf("GET /domains with Organization.Read.All only: %d", c.status)
	}
	gid := tn.AddGroup("Partners")
	u := tn.AddUser(User{DisplayName: "Bob", UserType: "Guest"})
	ref := `{"@odata.id":"https://graph.microsoft.com/v1.0/directoryObjects/` + u.ID + `"}`
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/groups/" + gid + "/members/$ref", ref},
		{"PATCH", "/users/" + u.ID, `{"jobTitle":"x"}`},
		{"POST", "/users/" + u.ID + "/sponsors/$ref", ref},
		{"DELETE", "/users/" + u.ID, ""},
		{"POST", "/invitations", `{"invitedUserEmailAddress":"a@fabrikam.com","inviteRedirectUrl":"https://x"}`},
		{"GET", "/roleManagement/directory/roleAssignments", ""},
	} {
		if c := do(t, s, narrow, tc.method, tc.path, tc.body); c.status != 403 {
			t.Errorf("%s %s with read permissions only: %d %v", tc.method, tc.path, c.status, c.body)
		}
	}
	if c := do(t, s, narrow, "GET", "/users/"+u.ID, ""); c.status != 200 {
		t.Errorf("GET /users/{id} with User.Read.All: %d", c.status)
	}
	// Delegated scopes count as well (an invitation sent as a person).
	person := tn.AddUser(User{DisplayName: "Dana", UserType: "Member"})
	if c := do(t, s, testToken(t, Claims{Scp: "openid User.Invite.All", OID: person.ID}), "POST", "/invitations",
		`{"invitedUserEmailAddress":"a@fabrikam.com","inviteRedirectUrl":"https://x"}`); c.status != 201 {
		t.Errorf("delegated User.Invite.All: %d %v", c.status, c.body)
	}
	// A batch item is authorized as its batch's caller.
	batch := `{"requests":[{"id":"1","method":"GET","url":"/organization"},{"id":"2","method":"GET","url":"/users/` + u.ID + `"}]}`
	c = do(t, s, narrow, "POST", "/$batch", batch)
	got := map[string]float64{}
	for _, r := range c.body["responses"].([]any) {
		m := r.(map[string]any)
		got[m["id"].(string)] = m["status"].(float64)
	}
	if got["1"] != 403 || got["2"] != 200 {
		t.Errorf("batch item statuses = %v, want 1: 403, 2: 200", got)
	}
}

// Ensure an app without tenant-wide write permissions may add members to
// the groups of an administrative unit it holds Groups Administrator on,
// and no others; and may write a guest's attributes and sponsor through a
// custom role scoped to a dynamic unit of guests only once the guest has
// joined it, the delay after its invitation.
func TestScopedRoles(t *testing.T) {
	clk := &clock{t: time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)}
	tn := NewTenant(TenantConfig{Now: clk.Now})
	s := NewServer(tn)
	t.Cleanup(s.Close)
	const sp = "sp-invitebot"
	tok := testToken(t, Claims{Roles: []string{"User.Invite.All", "User.Read.All"}, OID: sp, Sub: sp, IDTyp: "app"})
	offered, other := tn.AddGroup("Partner portal users"), tn.AddGroup("Finance")
	au := tn.AddAdministrativeUnit("invitebot groups", offered)
	tn.AssignDirectoryRole(sp, RoleTemplateGroupsAdministrator, "/administrativeUnits/"+au)
	guests := tn.AddDynamicGuestUnit("guests", 30*time.Minute)
	writer := tn.AddRoleDefinition("invitebot guest writer", ActionUserBasicUpdate, ActionUserJobInfoUpdate, ActionUserSponsorsUpdate)
	tn.AssignDirectoryRole(sp, writer, "/administrativeUnits/"+guests)
	tn.AssignDirectoryRole("someone-else", RoleTemplateUserAdministrator, "/")
	sponsor := tn.AddUser(User{DisplayName: "Dana", UserType: "Member"})

	c := do(t, s, tok, "POST", "/invitations", `{"invitedUserEmailAddress":"bob@fabrikam.com","inviteRedirectUrl":"https://x"}`)
	if c.status != 201 {
		t.Fatalf("invite: %d %v", c.status, c.body)
	}
	uid := c.body["invitedUser"].(map[string]any)["id"].(string)
	ref := func(id string) string {
		return `{"@odata.id":"https://graph.microsoft.com/v1.0/directoryObjects/` + id + `"}`
	}
	if c := do(t, s, tok, "POST", "/groups/"+offered+"/members/$ref", ref(uid)); c.status != 204 {
		t.Errorf("add to a group of the unit: %d %v", c.status, c.body)
	}
	if c := do(t, s, tok, "POST", "/groups/"+other+"/members/$ref", ref(uid)); c.status != 403 || graphErr(t, c) != "Authorization_RequestDenied" {
		t.Errorf("add to a group outside the unit: %d %v", c.status, c.body)
	}
	if c := do(t, s, tok, "DELETE", "/groups/"+offered+"/members/"+uid+"/$ref", ""); c.status != 204 {
		t.Errorf("remove from a group of the unit: %d %v", c.status, c.body)
	}
	patch, addSponsor := `{"givenName":"Bob","jobTitle":"Engineer"}`, ref(sponsor.ID)
	clk.Add(29 * time.Minute)
	if c := do(t, s, tok, "PATCH", "/users/"+uid, patch); c.status != 403 {
		t.Errorf("PATCH before the guest joined the unit: %d", c.status)
	}
	if c := do(t, s, tok, "POST", "/users/"+uid+"/sponsors/$ref", addSponsor); c.status != 403 {
		t.Errorf("sponsor before the guest joined the unit: %d", c.status)
	}
	if c := do(t, s, tok, "PATCH", "/users/"+uid, `{"accountEnabled":false}`); c.status != 403 {
		t.Errorf("accountEnabled is not in the custom role: %d", c.status)
	}
	clk.Add(time.Minute)
	if c := do(t, s, tok, "PATCH", "/users/"+uid, patch); c.status != 204 {
		t.Errorf("PATCH after the guest joined: %d %v", c.status, c.body)
	}
	if c := do(t, s, tok, "POST", "/users/"+uid+"/sponsors/$ref", addSponsor); c.status != 204 {
		t.Errorf("sponsor after the guest joined: %d %v", c.status, c.body)
	}
	if u, _ := tn.User(uid); u.GivenName != "Bob" || u.JobTitle != "Engineer" {
		t.Errorf("user = %+v", u)
	}
	// A member is never in the guests' unit.
	if c := do(t, s, tok, "PATCH", "/users/"+sponsor.ID, patch); c.status != 403 {
		t.Errorf("PATCH a member: %d", c.status)
	}

	// The assignments, readable with RoleManagement.Read.Directory.
	if c := do(t, s, tok, "GET", "/roleManagement/directory/roleAssignments", ""); c.status != http.StatusForbidden {
		t.Errorf("list assignments without RoleManagement.Read.Directory: %d", c.status)
	}
	reader := testToken(t, Claims{Roles: []string{"RoleManagement.Read.Directory"}, OID: sp})
	c = do(t, s, reader, "GET", "/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'"+sp+"'&$expand=roleDefinition", "")
	vals, _ := c.body["value"].([]any)
	if c.status != 200 || len(vals) != 2 {
		t.Fatalf("list assignments: %d %v", c.status, c.body)
	}
	a := vals[1].(map[string]any)
	def := a["roleDefinition"].(map[string]any)
	if a["directoryScopeId"] != "/administrativeUnits/"+guests || def["displayName"] != "invitebot guest writer" || def["isBuiltIn"] != false {
		t.Errorf("assignment = %v", a)
	}
	if w := tn.TenantWideRoles(sp); len(w) != 0 {
		t.Errorf("TenantWideRoles(sp) = %v: its roles are scoped", w)
	}
	if w := tn.TenantWideRoles("someone-else"); len(w) != 1 || w[0] != RoleTemplateUserAdministrator {
		t.Errorf("TenantWideRoles = %v", w)
	}
}

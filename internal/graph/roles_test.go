package graph_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graph"
	"github.com/invitebot/invitebot/internal/graphfake"
)

// narrowFixture is newFixture with an app that holds only roles.
func narrowFixture(t *testing.T, roles ...string) *fixture {
	t.Helper()
	return newFixtureWith(t, secret, roles)
}

// newFixtureWith runs the real azidentity client-secret flow against the
// TLS STS, which grants roles (nil: every one invitebot uses), and the SDK
// against the in-memory tenant (which also has an unverified domain).
func newFixtureWith(t *testing.T, clientSecret string, roles []string) *fixture {
	t.Helper()
	sts := graphfake.NewSTS(graphfake.STSConfig{TenantID: tenantID, ClientID: clientID, ClientSecret: secret, Roles: roles})
	t.Cleanup(sts.Close)
	tenant := graphfake.NewTenant(graphfake.TenantConfig{ID: tenantID, VerifiedDomains: []string{"contoso.com", "contoso.onmicrosoft.com"},
		UnverifiedDomains: []string{"new.contoso.com"}, ValidToken: sts.ValidToken})
	srv := graphfake.NewServer(tenant)
	t.Cleanup(srv.Close)
	c, err := graph.New(graph.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: clientSecret,
		AuthorityHost: sts.URL, AuthHTTPClient: sts.Client(), BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{tenant: tenant, sts: sts, client: c}
}

// Ensure the verified domains are read with Domain.Read.All when the app
// lacks Organization.Read.All: GET /domains, verified entries only, and
// from then on without asking /organization first.
func TestVerifiedDomainsWithDomainReadAll(t *testing.T) {
	f := narrowFixture(t, "Domain.Read.All")
	for range 2 {
		got, err := f.client.VerifiedDomains(t.Context())
		if err != nil || strings.Join(got, ",") != "contoso.com,contoso.onmicrosoft.com" {
			t.Fatalf("VerifiedDomains = %v, %v", got, err)
		}
	}
	var paths []string
	for _, r := range f.tenant.Requests() {
		paths = append(paths, r.Method+" "+r.Path+" "+itoa(r.Status))
	}
	if want := "GET /v1.0/organization 403,GET /v1.0/domains 200,GET /v1.0/domains 200"; strings.Join(paths, ",") != want {
		t.Errorf("requests = %v, want %s", paths, want)
	}

	// Neither permission: the error is the domains read's.
	f = narrowFixture(t, "User.Read.All")
	_, err := f.client.VerifiedDomains(t.Context())
	var de *flows.DirectoryError
	if !errors.As(err, &de) || de.Op != "read domains" || !errors.Is(err, flows.ErrForbidden) {
		t.Errorf("VerifiedDomains without either permission: %v", err)
	}
}

// Ensure the service principal's role assignments are read with their
// definitions.
func TestRoleAssignments(t *testing.T) {
	f := narrowFixture(t, "RoleManagement.Read.Directory")
	au := f.tenant.AddAdministrativeUnit("groups", "g1")
	f.tenant.AssignDirectoryRole(graphfake.DefaultServicePrincipal, graphfake.RoleTemplateGroupsAdministrator, "/administrativeUnits/"+au)
	f.tenant.AssignDirectoryRole("another-app", graphfake.RoleTemplateUserAdministrator, "/")
	got, err := f.client.RoleAssignments(t.Context(), graphfake.DefaultServicePrincipal)
	if err != nil || len(got) != 1 {
		t.Fatalf("RoleAssignments = %+v, %v", got, err)
	}
	a := got[0]
	if a.RoleName != "Groups Administrator" || !a.BuiltIn || a.Scope != "/administrativeUnits/"+au || a.RoleID != graphfake.RoleTemplateGroupsAdministrator ||
		!strings.Contains(strings.Join(a.Actions, " "), graphfake.ActionGroupMembersUpdate) {
		t.Errorf("assignment = %+v", a)
	}
	f = narrowFixture(t, "User.Read.All")
	if _, err := f.client.RoleAssignments(t.Context(), graphfake.DefaultServicePrincipal); !errors.Is(err, flows.ErrForbidden) {
		t.Errorf("RoleAssignments without RoleManagement.Read.Directory: %v", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

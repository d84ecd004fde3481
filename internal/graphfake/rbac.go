package graphfake

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Claims are what the tenant reads of a caller's access token, as Graph
// authorizes a call: the application permissions (roles), the delegated
// ones (scp) and who the caller is (oid: for an app, its service
// principal's object ID).
type Claims struct {
	Roles []string `json:"roles,omitempty"`
	Scp   string   `json:"scp,omitempty"`
	OID   string   `json:"oid,omitempty"`
	Sub   string   `json:"sub,omitempty"`
	IDTyp string   `json:"idtyp,omitempty"`
	Wids  []string `json:"wids,omitempty"`
}

// parseClaims decodes a JWT's claims (no signature check: ValidToken
// decides validity). A token that is not a JWT (a test's fixed string)
// yields nil: the caller is not restricted.
func parseClaims(tok string) *Claims {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var c Claims
	if json.Unmarshal(raw, &c) != nil {
		return nil
	}
	return &c
}

// has reports whether the token grants any of perms (application or
// delegated).
func (c *Claims) has(perms []string) bool {
	scp := strings.Fields(c.Scp)
	return slices.ContainsFunc(perms, func(p string) bool { return slices.Contains(c.Roles, p) || slices.Contains(scp, p) })
}

type claimsKey struct{}

// withCaller carries the caller's claims to the handlers (and into a
// batch's items).
func withCaller(r *http.Request, c *Claims) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), claimsKey{}, c))
}

func claimsOf(r *http.Request) *Claims {
	c, _ := r.Context().Value(claimsKey{}).(*Claims)
	return c
}

// Built-in directory role template IDs (Entra's permissions reference).
const (
	RoleTemplateGroupsAdministrator = "fdd7a751-b60b-444a-984c-02652fe8fa1c"
	RoleTemplateUserAdministrator   = "fe930be7-5e62-47db-91af-98c3a49a38b1"
	RoleTemplateDirectoryReaders    = "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"
	RoleTemplateGuestInviter        = "95e79109-95c0-4d8e-aee3-d01accf2d47b"
)

// Resource actions the emulated roles carry (Entra's custom-role actions).
const (
	ActionGroupMembersUpdate = "microsoft.directory/groups/members/update"
	ActionGroupRead          = "microsoft.directory/groups/standard/read"
	ActionUserRead           = "microsoft.directory/users/standard/read"
	ActionUserBasicUpdate    = "microsoft.directory/users/basic/update"
	ActionUserJobInfoUpdate  = "microsoft.directory/users/jobInfo/update"
	ActionUserSponsorsUpdate = "microsoft.directory/users/sponsors/update"
	ActionUserDisable        = "microsoft.directory/users/disable"
	ActionUserDelete         = "microsoft.directory/users/delete"
	ActionUserInviteGuest    = "microsoft.directory/users/inviteGuest"
)

// RoleDefinition is a directory role: built-in or custom.
type RoleDefinition struct {
	ID          string   `json:"id"`
	DisplayName string   `json:"displayName"`
	IsBuiltIn   bool     `json:"isBuiltIn"`
	Actions     []string `json:"-"`
}

// RoleAssignment assigns a role to a principal at a scope: "/" (the
// tenant), "/administrativeUnits/{id}" (the unit's members) or "/{id}"
// (the object itself, which does not extend to a group's members).
type RoleAssignment struct {
	ID               string `json:"id"`
	PrincipalID      string `json:"principalId"`
	RoleDefinitionID string `json:"roleDefinitionId"`
	DirectoryScopeID string `json:"directoryScopeId"`
}

// adminUnit is an administrative unit: assigned members (groups, users),
// or dynamic over guests, each guest joining delay after it was created
// (Entra processes dynamic membership later; it publishes no bound).
type adminUnit struct {
	name    string
	members map[string]bool
	guests  bool
	delay   time.Duration
}

var builtInRoles = []RoleDefinition{
	{ID: RoleTemplateGroupsAdministrator, DisplayName: "Groups Administrator", IsBuiltIn: true,
		Actions: []string{ActionGroupMembersUpdate, ActionGroupRead, ActionUserRead}},
	{ID: RoleTemplateUserAdministrator, DisplayName: "User Administrator", IsBuiltIn: true,
		Actions: []string{ActionGroupMembersUpdate, ActionGroupRead, ActionUserRead, ActionUserBasicUpdate, ActionUserJobInfoUpdate,
			ActionUserSponsorsUpdate, ActionUserDisable, ActionUserDelete, ActionUserInviteGuest}},
	{ID: RoleTemplateDirectoryReaders, DisplayName: "Directory Readers", IsBuiltIn: true, Actions: []string{ActionGroupRead, ActionUserRead}},
	{ID: RoleTemplateGuestInviter, DisplayName: "Guest Inviter", IsBuiltIn: true, Actions: []string{ActionUserInviteGuest}},
}

// AddRoleDefinition adds a custom role with the given resource actions
// and returns its ID.
func (t *Tenant) AddRoleDefinition(name string, actions ...string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := RoleDefinition{ID: newGUID(), DisplayName: name, Actions: slices.Clone(actions)}
	t.roleDefs = append(t.roleDefs, d)
	return d.ID
}

// AddAdministrativeUnit adds an administrative unit whose members are the
// given objects (groups or users) and returns its ID.
func (t *Tenant) AddAdministrativeUnit(name string, members ...string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := newGUID()
	au := &adminUnit{name: name, members: map[string]bool{}}
	for _, m := range members {
		au.members[m] = true
	}
	t.units[id] = au
	return id
}

// AddDynamicGuestUnit adds a dynamic administrative unit with the rule
// (user.userType -eq "Guest"): a guest becomes a member delay after it was
// created (by the tenant's clock), not before. Guests added with AddUser
// are members at once.
func (t *Tenant) AddDynamicGuestUnit(name string, delay time.Duration) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := newGUID()
	t.units[id] = &adminUnit{name: name, guests: true, delay: delay}
	return id
}

// AssignDirectoryRole assigns role (a template or custom role ID) to principal (a
// service principal's object ID) at scope and returns the assignment's ID.
func (t *Tenant) AssignDirectoryRole(principal, role, scope string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := RoleAssignment{ID: newGUID(), PrincipalID: principal, RoleDefinitionID: role, DirectoryScopeID: scope}
	t.assignments = append(t.assignments, a)
	return a.ID
}

// TenantWideRoles returns the built-in roles assigned to principal at the
// tenant scope: what Entra puts in a token's wids claim.
func (t *Tenant) TenantWideRoles(principal string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, a := range t.assignments {
		if a.PrincipalID == principal && a.DirectoryScopeID == "/" && t.roleDef(a.RoleDefinitionID).IsBuiltIn {
			out = append(out, a.RoleDefinitionID)
		}
	}
	return out
}

// roleDef returns the role definition with id (zero if none). t.mu held.
func (t *Tenant) roleDef(id string) RoleDefinition {
	for _, d := range slices.Concat(builtInRoles, t.roleDefs) {
		if d.ID == id {
			return d
		}
	}
	return RoleDefinition{}
}

// inUnit reports whether object id is a member of the unit now. t.mu held.
func (t *Tenant) inUnit(au *adminUnit, id string) bool {
	if au.members[id] {
		return true
	}
	u := t.byID[id]
	if !au.guests || u == nil || u.UserType != "Guest" {
		return false
	}
	created, ok := t.created[id]
	return !ok || !t.now().Before(created.Add(au.delay))
}

// covers reports whether a role assignment of the caller grants action on
// object target. t.mu held.
func (t *Tenant) covers(principal, action, target string) bool {
	if principal == "" {
		return false
	}
	for _, a := range t.assignments {
		if a.PrincipalID != principal || !slices.Contains(t.roleDef(a.RoleDefinitionID).Actions, action) {
			continue
		}
		scope := a.DirectoryScopeID
		switch {
		case scope == "/":
			return true
		case strings.HasPrefix(scope, "/administrativeUnits/"):
			if au := t.units[strings.TrimPrefix(scope, "/administrativeUnits/")]; au != nil && t.inUnit(au, target) {
				return true
			}
		}
	}
	return false
}

// Permissions Graph accepts per route (least privileged first), and the
// role action that may stand in for them on the target object.
var routePerms = map[Route]struct {
	perms  []string
	action string
}{
	RouteGetOrganization:  {[]string{"Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}, ""},
	RouteListDomains:      {[]string{"Domain.Read.All", "Domain.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}, ""},
	RouteListUsers:        {[]string{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}, ActionUserRead},
	RouteGetUser:          {[]string{"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}, ActionUserRead},
	RoutePatchUser:        {[]string{"User.ReadWrite.All", "Directory.ReadWrite.All"}, ""}, // per property: patchActions
	RouteDeleteUser:       {[]string{"User.ReadWrite.All", "Directory.ReadWrite.All"}, ActionUserDelete},
	RoutePostInvitations:  {[]string{"User.Invite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}, ""},
	RouteAddMember:        {[]string{"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}, ActionGroupMembersUpdate},
	RouteRemoveMember:     {[]string{"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}, ActionGroupMembersUpdate},
	RouteAddSponsor:       {[]string{"User.ReadWrite.All", "Directory.ReadWrite.All"}, ActionUserSponsorsUpdate},
	RouteGetGroup:         {[]string{"GroupMember.Read.All", "Group.Read.All", "GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}, ActionGroupRead},
	RouteListRoleAssigned: {[]string{"RoleManagement.Read.Directory", "RoleManagement.Read.All", "RoleManagement.ReadWrite.Directory", "Directory.Read.All", "Directory.ReadWrite.All"}, ""},
}

// patchActions maps the user properties invitebot writes to the role
// action that allows writing them.
var patchActions = map[string]string{
	"givenName": ActionUserBasicUpdate, "surname": ActionUserBasicUpdate, "displayName": ActionUserBasicUpdate,
	"companyName": ActionUserJobInfoUpdate, "jobTitle": ActionUserJobInfoUpdate, "accountEnabled": ActionUserDisable,
}

// authorized reports whether the caller may call route on target (an
// object ID, "" for none) for actions (nil: the route's own action).
// A caller without claims (a non-JWT test token) is not restricted.
func (t *Tenant) authorized(r *http.Request, route Route, target string, actions []string) bool {
	c := claimsOf(r)
	need, ok := routePerms[route]
	if c == nil || !ok || c.has(need.perms) {
		return true
	}
	if actions == nil {
		if need.action == "" {
			return false
		}
		actions = []string{need.action}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if u := t.lookup(target); u != nil {
		target = u.ID
	}
	for _, a := range actions {
		if !t.covers(c.OID, a, target) {
			return false
		}
	}
	return true
}

// denied writes Graph's 403 for a caller without the privilege.
func denied(w http.ResponseWriter, r *http.Request) {
	graphError(w, r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
}

// listRoleAssignments is GET /roleManagement/directory/roleAssignments,
// with $filter=principalId eq '…' and $expand=roleDefinition.
func (t *Tenant) listRoleAssignments(w http.ResponseWriter, r *http.Request) {
	filter := strings.TrimSpace(r.URL.Query().Get("$filter"))
	principal := ""
	if filter != "" {
		v, ok := strings.CutPrefix(filter, "principalId eq '")
		if !ok || !strings.HasSuffix(v, "'") {
			graphError(w, r, http.StatusBadRequest, "Request_UnsupportedQuery", "Unsupported filter: "+filter)
			return
		}
		principal = strings.TrimSuffix(v, "'")
	}
	expand := strings.Contains(r.URL.Query().Get("$expand"), "roleDefinition")
	t.mu.Lock()
	out := []any{}
	for _, a := range t.assignments {
		if principal != "" && a.PrincipalID != principal {
			continue
		}
		m := map[string]any{"id": a.ID, "principalId": a.PrincipalID, "roleDefinitionId": a.RoleDefinitionID, "directoryScopeId": a.DirectoryScopeID}
		if expand {
			d := t.roleDef(a.RoleDefinitionID)
			perms := []any{map[string]any{"allowedResourceActions": d.Actions}}
			m["roleDefinition"] = map[string]any{"id": d.ID, "displayName": d.DisplayName, "isBuiltIn": d.IsBuiltIn,
				"templateId": d.ID, "rolePermissions": perms}
		}
		out = append(out, m)
	}
	t.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#roleManagement/directory/roleAssignments", "value": out})
}

// domains is GET /domains: every domain, verified or not.
func (t *Tenant) domains(w http.ResponseWriter) {
	var out []any
	for i, d := range t.cfg.VerifiedDomains {
		out = append(out, map[string]any{"id": d, "isVerified": true, "isDefault": i == 0, "isInitial": false,
			"authenticationType": "Managed", "supportedServices": []string{"Email"}})
	}
	for _, d := range t.cfg.UnverifiedDomains {
		out = append(out, map[string]any{"id": d, "isVerified": false, "isDefault": false, "isInitial": false,
			"authenticationType": "Managed", "supportedServices": []string{}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#domains", "value": out})
}

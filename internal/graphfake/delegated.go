package graphfake

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The values of authorizationPolicy.allowInvitesFrom.
const (
	InvitesFromNone                          = "none"
	InvitesFromAdminsAndGuestInviters        = "adminsAndGuestInviters"
	InvitesFromAdminsGuestInvitersAndMembers = "adminsGuestInvitersAndAllMembers"
	InvitesFromEveryone                      = "everyone"
)

// The directory roles the tenant knows for delegated callers.
const (
	RoleGuestInviter        = "Guest Inviter"
	RoleUserAdministrator   = "User Administrator"
	RoleGlobalAdministrator = "Global Administrator"
)

// caller is who a bearer token acts for: the app (app-only) or a person
// (a delegated token: scp and oid).
type caller struct {
	delegated bool
	oid       string
	scopes    []string
	nbf, exp  int64 // the token's lifetime (Unix seconds); 0: no claim
}

// callerOf reads the token's claims (the STS's tokens are unsigned JWTs;
// validity was checked against the STS before).
func callerOf(r *http.Request) caller {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return caller{}
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return caller{}
	}
	var c struct {
		Scp string `json:"scp"`
		Oid string `json:"oid"`
		Nbf int64  `json:"nbf"`
		Exp int64  `json:"exp"`
	}
	if json.Unmarshal(raw, &c) != nil || c.Scp == "" {
		return caller{}
	}
	return caller{delegated: true, oid: c.Oid, scopes: strings.Fields(c.Scp), nbf: c.Nbf, exp: c.Exp}
}

// lifetimeError returns Graph's message refusing a delegated token
// outside its lifetime at now, or "" if it is within it. Graph answers
// 401 InvalidAuthenticationToken (with a WWW-Authenticate challenge): the
// message observed for an expired token is "Lifetime validation failed,
// the token is expired." (earlier "Access token has expired or is not yet
// valid."). App-only tokens are not checked: azidentity caches them by
// the process's clock, not the tenant's.
func (c caller) lifetimeError(now time.Time) string {
	switch {
	case !c.delegated:
		return ""
	case c.exp != 0 && now.Unix() >= c.exp:
		return "Lifetime validation failed, the token is expired."
	case c.nbf != 0 && now.Unix() < c.nbf:
		return "Access token has expired or is not yet valid."
	}
	return ""
}

// graphChallenge is the WWW-Authenticate header Graph sends with a 401.
const graphChallenge = `Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"`

// SetAllowInvitesFrom sets authorizationPolicy.allowInvitesFrom (one of
// the InvitesFrom values; the default is everyone).
func (t *Tenant) SetAllowInvitesFrom(v string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.allowInvitesFrom = v
}

// AssignRole gives the user (oid) a directory role, such as
// RoleGuestInviter.
func (t *Tenant) AssignRole(oid, role string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.roles == nil {
		t.roles = map[string][]string{}
	}
	t.roles[oid] = append(t.roles[oid], role)
}

// admitCaller applies the tenant's rules to the caller of a request on
// route: a delegated token reaches only POST /invitations (its one
// permission is User.Invite.All), and an invitation needs the caller's
// right to invite under allowInvitesFrom. It writes the refusal and
// returns false, or returns true. The caller must not hold t.mu.
func (t *Tenant) admitCaller(w http.ResponseWriter, r *http.Request, route Route, c caller, memberType bool) bool {
	t.mu.Lock()
	policy := t.allowInvitesFrom
	roles := t.roles[c.oid]
	u := t.byID[c.oid]
	t.mu.Unlock()
	if c.delegated && (route != RoutePostInvitations || !slices.Contains(c.scopes, delegatedScope)) {
		graphError(w, r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
		return false
	}
	if route != RoutePostInvitations {
		return true
	}
	if policy == InvitesFromNone {
		graphError(w, r, http.StatusForbidden, "Authorization_RequestDenied", "Guest invitations not allowed for your company. Contact your company administrator for more details.")
		return false
	}
	if !c.delegated {
		return true // app-only: the documented restriction is only "none"
	}
	admin := slices.Contains(roles, RoleUserAdministrator) || slices.Contains(roles, RoleGlobalAdministrator)
	inviter := admin || slices.Contains(roles, RoleGuestInviter)
	var allowed bool
	switch {
	case u == nil:
		allowed = false
	case policy == InvitesFromAdminsAndGuestInviters:
		allowed = inviter
	case policy == InvitesFromAdminsGuestInvitersAndMembers:
		allowed = inviter || u.UserType != "Guest"
	default:
		allowed = true
	}
	if allowed && memberType && !admin {
		allowed = false
	}
	if !allowed {
		graphError(w, r, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
	}
	return allowed
}

package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/invitebot/invitebot/internal/graph"
)

// tokenClaims is what doctor reads of the app's access token (no signature
// check: the token came from the token service just now, over TLS).
type tokenClaims struct {
	Roles []string `json:"roles"` // Graph application permissions
	OID   string   `json:"oid"`   // the service principal's object ID
	Wids  []string `json:"wids"`  // tenant-wide built-in roles only
}

func readClaims(tok string) (tokenClaims, error) {
	var c tokenClaims
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return c, errors.New("not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, fmt.Errorf("claims: %w", err)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("claims: %w", err)
	}
	return c, nil
}

// has reports whether the token carries any of perms.
func (c tokenClaims) has(perms ...string) bool {
	return slices.ContainsFunc(perms, func(p string) bool { return slices.Contains(c.Roles, p) })
}

// Built-in roles that add group members, and that write guests'
// attributes and sponsors, by template ID (for the wids claim).
var (
	groupWriterRoles = map[string]string{"fdd7a751-b60b-444a-984c-02652fe8fa1c": "Groups Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1": "User Administrator"}
	userWriterRoles  = map[string]string{"fe930be7-5e62-47db-91af-98c3a49a38b1": "User Administrator"}
)

// The role actions each write needs (any variant of the group one).
var (
	groupMembersActions = []string{"microsoft.directory/groups/members/update", "microsoft.directory/groups.security/members/update",
		"microsoft.directory/groups.security.assignedMembership/members/update", "microsoft.directory/groups.unified/members/update"}
	userWriteActions = []string{"microsoft.directory/users/basic/update", "microsoft.directory/users/jobInfo/update", "microsoft.directory/users/sponsors/update"}
)

// roleReader lists invitebot's role assignments.
type roleReader interface {
	RoleAssignments(ctx context.Context, principal string) ([]graph.RoleAssignment, error)
}

// checkWrites reports how invitebot may add group members and write
// guests' attributes and sponsors: tenant-wide Graph permissions (the
// simple set-up), tenant-wide roles (the token's wids), or roles scoped to
// administrative units, read from Graph when RoleManagement.Read.Directory
// is granted. What it cannot see, it says it did not verify.
func checkWrites(ctx context.Context, doc *doctor, c tokenClaims, dir roleReader) {
	groupsWide := c.has("GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All")
	usersWide := c.has("User.ReadWrite.All", "Directory.ReadWrite.All")
	if groupsWide && usersWide {
		return
	}
	var (
		assigned []graph.RoleAssignment
		readErr  error
	)
	canRead := c.has("RoleManagement.Read.Directory", "RoleManagement.Read.All", "RoleManagement.ReadWrite.Directory", "Directory.Read.All")
	if canRead {
		assigned, readErr = dir.RoleAssignments(ctx, c.OID)
		if readErr != nil {
			doc.warn("directory roles", "cannot read invitebot's role assignments: %v", readErr)
		}
	}
	known := canRead && readErr == nil
	unseen := "doctor cannot read invitebot's role assignments (grant RoleManagement.Read.Directory to let it; the token's wids claim lists only tenant-wide roles)"
	if !groupsWide {
		switch via := writers(c, assigned, groupWriterRoles, groupMembersActions[:1], groupMembersActions); {
		case via != "":
			doc.ok("directory roles", "group adds through %s, not GroupMember.ReadWrite.All%s", via, unitCaveat(via,
				"doctor cannot see which groups the unit holds: a policy group outside it is refused (403) when a guest is added"))
		case known:
			doc.fail("directory roles", "no GroupMember.ReadWrite.All and no directory role that adds group members: grant the permission, "+
				"or assign Groups Administrator (or a custom role with microsoft.directory/groups/members/update) to invitebot at the scope of an administrative unit holding the policy's groups")
		default:
			doc.warn("directory roles", "no GroupMember.ReadWrite.All and no tenant-wide role in the token that adds group members; %s: "+
				"group adds through a role scoped to an administrative unit are not verified", unseen)
		}
	}
	if usersWide {
		return
	}
	switch via := writers(c, assigned, userWriterRoles, userWriteActions, userWriteActions[:1]); {
	case via != "":
		doc.ok("directory roles", "attributes and sponsors through %s, not User.ReadWrite.All%s", via, unitCaveat(via,
			"a new guest is writable only once it has joined the unit (dynamic membership takes minutes to hours): invitebot retries for INVITEBOT_SCOPED_WRITE_WINDOW; doctor cannot see the unit's membership rule"))
	case known:
		doc.warn("graph permissions", "no User.ReadWrite.All and no directory role with %s: needed for %s", strings.Join(userWriteActions, ", "), optionalRoles["User.ReadWrite.All"])
	default:
		doc.warn("graph permissions", "no User.ReadWrite.All: needed for %s, unless a role scoped to an administrative unit of guests grants it; %s, so that is not verified",
			optionalRoles["User.ReadWrite.All"], unseen)
	}
}

// writers names the roles that grant the write: a tenant-wide built-in
// role in wids, or an assignment whose role has every action in all (or,
// for a partial match, one in any), with its scope.
func writers(c tokenClaims, assigned []graph.RoleAssignment, builtIn map[string]string, all, some []string) string {
	var via []string
	for _, w := range c.Wids {
		if name, ok := builtIn[w]; ok {
			via = append(via, name+" (tenant-wide)")
		}
	}
	for _, a := range assigned {
		hasAll := !slices.ContainsFunc(all, func(x string) bool { return !slices.Contains(a.Actions, x) })
		if !hasAll && !slices.ContainsFunc(some, func(x string) bool { return slices.Contains(a.Actions, x) }) {
			continue
		}
		name := a.RoleName
		if !hasAll {
			name += " (not all of " + strings.Join(all, ", ") + ")"
		}
		scope := "tenant-wide"
		if a.Scope != "/" {
			scope = "scoped to " + a.Scope
		}
		via = append(via, name+" "+scope)
	}
	return strings.Join(slices.Compact(via), "; ")
}

// unitCaveat returns note when via includes a role scoped to an
// administrative unit.
func unitCaveat(via, note string) string {
	if strings.Contains(via, "/administrativeUnits/") {
		return "; " + note
	}
	return ""
}

package graph

import (
	"context"
	"strings"

	"github.com/microsoftgraph/msgraph-sdk-go/rolemanagement"
)

// domainsFallback reads the verified domains with GET /domains after GET
// /organization was refused (403): Domain.Read.All is the narrower
// permission for the same answer. Once /domains answers, later reads go
// there directly. If it is refused too, the error's Op is "read domains".
func (c *Client) domainsFallback(ctx context.Context) ([]string, error) {
	out, err := c.listDomains(ctx)
	if err == nil {
		c.useDomains.Store(true)
	}
	return out, err
}

// listDomains is GET /domains, keeping the verified ones, lower-cased.
func (c *Client) listDomains(ctx context.Context) ([]string, error) {
	resp, err := c.graph.Domains().Get(ctx, nil)
	if err != nil {
		return nil, translate("read domains", err)
	}
	var out []string
	for _, d := range resp.GetValue() {
		if v := d.GetIsVerified(); v != nil && *v && d.GetId() != nil {
			out = append(out, strings.ToLower(*d.GetId()))
		}
	}
	return out, nil
}

// RoleAssignment is a directory role assigned to invitebot's service
// principal, as doctor reports it.
type RoleAssignment struct {
	RoleID      string   // role definition (template) ID
	RoleName    string   // its display name
	BuiltIn     bool     // a built-in role (else custom)
	Scope       string   // "/", "/administrativeUnits/{id}", "/{objectId}"
	Actions     []string // the role's allowed resource actions
	PrincipalID string
}

// RoleAssignments lists the role assignments of principal (a service
// principal's object ID) with their role definitions: GET
// /roleManagement/directory/roleAssignments?$filter=principalId eq '…'
// &$expand=roleDefinition (RoleManagement.Read.Directory). For doctor.
func (c *Client) RoleAssignments(ctx context.Context, principal string) ([]RoleAssignment, error) {
	filter := "principalId eq '" + strings.ReplaceAll(principal, "'", "''") + "'"
	resp, err := c.graph.RoleManagement().Directory().RoleAssignments().Get(ctx, &rolemanagement.DirectoryRoleAssignmentsRequestBuilderGetRequestConfiguration{
		QueryParameters: &rolemanagement.DirectoryRoleAssignmentsRequestBuilderGetQueryParameters{Filter: &filter, Expand: []string{"roleDefinition"}},
	})
	if err != nil {
		return nil, translate("read role assignments", err)
	}
	var out []RoleAssignment
	for _, a := range resp.GetValue() {
		ra := RoleAssignment{RoleID: deref(a.GetRoleDefinitionId()), Scope: deref(a.GetDirectoryScopeId()), PrincipalID: deref(a.GetPrincipalId())}
		if d := a.GetRoleDefinition(); d != nil {
			ra.RoleName = deref(d.GetDisplayName())
			ra.BuiltIn = d.GetIsBuiltIn() != nil && *d.GetIsBuiltIn()
			for _, p := range d.GetRolePermissions() {
				ra.Actions = append(ra.Actions, p.GetAllowedResourceActions()...)
			}
		}
		out = append(out, ra)
	}
	return out, nil
}

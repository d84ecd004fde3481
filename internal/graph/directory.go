package graph

import (
	"context"
	"errors"
	"slices"
	"strings"

	msgraph "github.com/microsoftgraph/msgraph-sdk-go"
	"github.com/microsoftgraph/msgraph-sdk-go/groups"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graph/odata"
)

// VerifiedDomains implements flows.Directory: GET /organization's
// verifiedDomains, or (see domainsFallback) GET /domains.
func (c *Client) VerifiedDomains(ctx context.Context) ([]string, error) {
	if c.useDomains.Load() {
		return c.listDomains(ctx)
	}
	resp, err := c.graph.Organization().Get(ctx, nil)
	if err != nil {
		if err = translate("read organization", err); errors.Is(err, flows.ErrForbidden) {
			return c.domainsFallback(ctx)
		}
		return nil, err
	}
	var out []string
	for _, org := range resp.GetValue() {
		for _, d := range org.GetVerifiedDomains() {
			if n := d.GetName(); n != nil {
				out = append(out, strings.ToLower(*n))
			}
		}
	}
	return out, nil
}

// FindUsers implements flows.Directory.
func (c *Client) FindUsers(ctx context.Context, email string, withUPN bool) ([]flows.DirectoryUser, error) {
	filter := odata.FilterByEmail(email, withUPN)
	top := int32(50)
	resp, err := c.graph.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UsersRequestBuilderGetQueryParameters{
			Filter: &filter, Top: &top,
			Select: []string{"id", "displayName", "mail", "userPrincipalName", "userType", "externalUserState"},
		},
	})
	if err != nil {
		return nil, translate("find users", err)
	}
	var out []flows.DirectoryUser
	for _, u := range resp.GetValue() {
		out = append(out, flows.DirectoryUser{
			ID: deref(u.GetId()), DisplayName: deref(u.GetDisplayName()), Mail: deref(u.GetMail()),
			UserPrincipalName: deref(u.GetUserPrincipalName()), UserType: flows.UserType(deref(u.GetUserType())),
			ExternalUserState: deref(u.GetExternalUserState()),
		})
	}
	return out, nil
}

// Invite implements flows.Directory. The SDK's retries are off (see the
// package doc), so this POSTs exactly once.
func (c *Client) Invite(ctx context.Context, in flows.Invite) (flows.Invited, error) {
	return invite(ctx, c.graph, in)
}

// invite POSTs in through g (the app's client or the delegated one).
func invite(ctx context.Context, g *msgraph.GraphServiceClient, in flows.Invite) (flows.Invited, error) {
	body := models.NewInvitation()
	body.SetInvitedUserEmailAddress(&in.Email)
	body.SetInviteRedirectUrl(&in.RedirectURL)
	body.SetSendInvitationMessage(&in.SendMessage)
	if in.DisplayName != "" {
		body.SetInvitedUserDisplayName(&in.DisplayName)
	}
	if in.UserType != "" {
		ut := string(in.UserType)
		body.SetInvitedUserType(&ut)
	}
	if in.Message != "" || in.CC != "" || in.MessageLanguage != "" {
		info := models.NewInvitedUserMessageInfo()
		if in.Message != "" {
			info.SetCustomizedMessageBody(&in.Message)
		}
		if in.MessageLanguage != "" {
			info.SetMessageLanguage(&in.MessageLanguage)
		}
		if in.CC != "" {
			addr := models.NewEmailAddress()
			addr.SetAddress(&in.CC)
			rcpt := models.NewRecipient()
			rcpt.SetEmailAddress(addr)
			info.SetCcRecipients([]models.Recipientable{rcpt})
		}
		body.SetInvitedUserMessageInfo(info)
	}
	if in.ExistingUserID != "" {
		u := models.NewUser()
		u.SetId(&in.ExistingUserID)
		body.SetInvitedUser(u)
	}
	if in.ResetRedemption {
		body.SetResetRedemption(&in.ResetRedemption)
	}
	resp, err := g.Invitations().Post(ctx, body, nil)
	if err != nil {
		return flows.Invited{}, translate("invite", err)
	}
	out := flows.Invited{InvitationID: deref(resp.GetId()), RedeemURL: deref(resp.GetInviteRedeemUrl()), Status: deref(resp.GetStatus())}
	if u := resp.GetInvitedUser(); u != nil {
		out.UserID = deref(u.GetId())
	}
	return out, nil
}

// UpdateUser implements flows.Directory.
func (c *Client) UpdateUser(ctx context.Context, id string, a flows.Attributes) error {
	u := models.NewUser()
	set := func(v string, f func(*string)) {
		if v != "" {
			f(&v)
		}
	}
	set(a.GivenName, u.SetGivenName)
	set(a.Surname, u.SetSurname)
	set(a.CompanyName, u.SetCompanyName)
	set(a.JobTitle, u.SetJobTitle)
	_, err := c.graph.Users().ByUserId(id).Patch(ctx, u, nil)
	return translate("update user", err)
}

// DisableUser implements flows.Directory: PATCH accountEnabled false.
func (c *Client) DisableUser(ctx context.Context, id string) error {
	u := models.NewUser()
	off := false
	u.SetAccountEnabled(&off)
	_, err := c.graph.Users().ByUserId(id).Patch(ctx, u, nil)
	return translate("disable user", err)
}

// AddGroupMember implements flows.Directory. Graph's "already exist…
// 'members'" 400 is success.
func (c *Client) AddGroupMember(ctx context.Context, groupID, userID string) error {
	ref := models.NewReferenceCreate()
	odataID := c.base.String() + "/directoryObjects/" + userID
	ref.SetOdataId(&odataID)
	err := translate("add group member", c.graph.Groups().ByGroupId(groupID).Members().Ref().Post(ctx, ref, nil))
	if de, ok := err.(*flows.DirectoryError); ok && de.Status == 400 && strings.Contains(de.Message, "already exist") {
		return nil
	}
	return err
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Group is what doctor reads of a group: whether Graph lets an app add
// members to it.
type Group struct {
	DisplayName           string
	GroupTypes            []string // "Unified" (Microsoft 365), "DynamicMembership"
	MailEnabled           bool
	SecurityEnabled       bool
	OnPremisesSyncEnabled bool // synced from Active Directory
	IsAssignableToRole    bool
}

// MembersRefusal says why Graph would refuse to add members to g, or ""
// when it would not (with GroupMember.ReadWrite.All).
func (g Group) MembersRefusal() string {
	switch {
	case slices.Contains(g.GroupTypes, "DynamicMembership"):
		return "its membership is dynamic (a rule decides it): members cannot be added"
	case g.OnPremisesSyncEnabled:
		return "it is synced from on-premises Active Directory: its members are managed there"
	case g.MailEnabled && !slices.Contains(g.GroupTypes, "Unified") && g.SecurityEnabled:
		return "it is a mail-enabled security group, read-only through Microsoft Graph (Exchange manages its members)"
	case g.MailEnabled && !slices.Contains(g.GroupTypes, "Unified"):
		return "it is a distribution list, read-only through Microsoft Graph (Exchange manages its members)"
	}
	return ""
}

// Group reads a group (GET /groups/{id}); for doctor.
func (c *Client) Group(ctx context.Context, id string) (Group, error) {
	g, err := c.graph.Groups().ByGroupId(id).Get(ctx, &groups.GroupItemRequestBuilderGetRequestConfiguration{
		QueryParameters: &groups.GroupItemRequestBuilderGetQueryParameters{
			Select: []string{"id", "displayName", "groupTypes", "mailEnabled", "securityEnabled", "onPremisesSyncEnabled", "isAssignableToRole"},
		},
	})
	if err != nil {
		return Group{}, translate("read group", err)
	}
	b := func(p *bool) bool { return p != nil && *p }
	return Group{
		DisplayName: deref(g.GetDisplayName()), GroupTypes: g.GetGroupTypes(),
		MailEnabled: b(g.GetMailEnabled()), SecurityEnabled: b(g.GetSecurityEnabled()),
		OnPremisesSyncEnabled: b(g.GetOnPremisesSyncEnabled()), IsAssignableToRole: b(g.GetIsAssignableToRole()),
	}, nil
}

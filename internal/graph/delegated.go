package graph

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/invitebot/invitebot/flows"
)

// DelegatedScope returns the delegated permission invitebot asks an
// inviter to grant at sign-in, User.Invite.All on the Graph host that base
// (GRAPH_BASE_URL) belongs to: the national cloud's own host, else
// https://graph.microsoft.com.
func DelegatedScope(base *url.URL) string {
	return strings.TrimSuffix(ScopeFor(base), "/.default") + "/User.Invite.All"
}

// InviteAs POSTs the invitation as a person: with token, their delegated
// access token, instead of the app's. The request is Invite's; errors are
// translated the same way (a 403 is then the person's refusal).
func (c *Client) InviteAs(ctx context.Context, token string, in flows.Invite) (flows.Invited, error) {
	return invite(context.WithValue(ctx, userTokenKey{}, token), c.asUser, in)
}

type userTokenKey struct{}

// userToken is the credential of the delegated client: the token its
// request's context carries. Without one it fails, so the delegated client
// can never fall back to any other token.
type userToken struct{}

func (userToken) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, _ := ctx.Value(userTokenKey{}).(string)
	if tok == "" {
		return azcore.AccessToken{}, errors.New("no delegated token for this request")
	}
	return azcore.AccessToken{Token: tok, ExpiresOn: time.Now().Add(time.Minute)}, nil
}

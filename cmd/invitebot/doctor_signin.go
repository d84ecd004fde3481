package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/graph"
	"github.com/invitebot/invitebot/internal/signin"
)

// doctorSignIn checks the settings of INVITEBOT_INVITE_AS: the key, the
// redirect URI to register, and that the authority's authorize endpoint
// answers. authHTTP carries the authority call (nil: default client).
func doctorSignIn(ctx context.Context, doc *doctor, cfg *config.Config, authHTTP *http.Client) {
	if !cfg.Delegated() {
		doc.ok("invite as", "app: invitations are sent with invitebot's own token (INVITEBOT_INVITE_AS=app)")
		return
	}
	base, _ := url.Parse(cfg.GraphBaseURL)
	doc.ok("invite as", "%s: POST /invitations with the inviter's delegated %s (the app registration needs this delegated permission, with admin consent)",
		cfg.InviteAs, graph.DelegatedScope(base))
	doc.ok("redirect uri", "%s (add it to the app registration: Authentication → Web → Redirect URIs)", cfg.RedirectURI())
	cur, prev := cfg.TokenKeys()
	if prev != nil {
		doc.ok("token key", "key %s; previous key %s still read (rotation: unset INVITEBOT_TOKEN_KEY_PREVIOUS once every connected person has used invitebot, or they reconnect)",
			signin.KeyID(cur), signin.KeyID(prev))
	} else {
		doc.ok("token key", "key %s (32 bytes)", signin.KeyID(cur))
	}
	if cfg.ClientSecret == "" && cfg.CertificatePath == "" {
		doc.fail("sign-in", "a workload identity cannot redeem sign-in codes: set AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH")
	}
	host := strings.TrimSuffix(cfg.AuthorityHost, "/")
	if host == "" {
		host = strings.TrimSuffix(config.DefaultAuthorityHost, "/")
	}
	disco := host + "/" + cfg.TenantID + "/v2.0/.well-known/openid-configuration"
	if authHTTP == nil {
		authHTTP = http.DefaultClient
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, disco, nil)
	resp, err := authHTTP.Do(req)
	if err != nil {
		doc.fail("sign-in", "%s: %v", disco, err)
		return
	}
	defer resp.Body.Close()
	var meta struct {
		Authorize string `json:"authorization_endpoint"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&meta) != nil || meta.Authorize == "" {
		doc.fail("sign-in", "%s answered %d without an authorization_endpoint (is AZURE_TENANT_ID right?)", disco, resp.StatusCode)
		return
	}
	doc.ok("sign-in", "inviters sign in at %s", meta.Authorize)
}

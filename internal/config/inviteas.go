package config

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
)

// The values of INVITEBOT_INVITE_AS.
const (
	InviteAsApp          = "app"            // the app's own token (the default)
	InviteAsInviter      = "inviter"        // the inviting person's delegated token
	InviteAsInviterOrApp = "inviter_or_app" // the person's when connected, else the app's
)

// CallbackPath is the path of the sign-in redirect URI under
// INVITEBOT_PUBLIC_URL.
const CallbackPath = "/auth/callback"

// Delegated reports whether invitations may be sent with the inviters'
// own tokens (INVITEBOT_INVITE_AS is not app).
func (c *Config) Delegated() bool { return c.InviteAs != InviteAsApp }

// RedirectURI returns the sign-in redirect URI that the app registration
// must list as a Web redirect URI, or "" without INVITEBOT_PUBLIC_URL.
func (c *Config) RedirectURI() string {
	if c.PublicURL == "" {
		return ""
	}
	return c.PublicURL + CallbackPath
}

// TokenKeys returns the decoded INVITEBOT_TOKEN_KEY and
// INVITEBOT_TOKEN_KEY_PREVIOUS (nil when unset). Load has checked them.
func (c *Config) TokenKeys() (current, previous []byte) {
	current, _ = DecodeTokenKey(c.TokenKey.Reveal())
	previous, _ = DecodeTokenKey(c.TokenKeyPrevious.Reveal())
	return current, previous
}

// DecodeTokenKey decodes a token key: 32 bytes in standard or URL-safe
// base64, padded or not. An empty value is nil, nil. The error never
// quotes the value.
func DecodeTokenKey(v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	v = strings.TrimRight(v, "=")
	var b []byte
	var err error
	if strings.ContainsAny(v, "-_") {
		b, err = base64.RawURLEncoding.DecodeString(v)
	} else {
		b, err = base64.RawStdEncoding.DecodeString(v)
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("not base64 (make one with: openssl rand -base64 32)")
	case len(b) != 32:
		return nil, fmt.Errorf("%d bytes; want 32 random bytes, base64 (openssl rand -base64 32)", len(b))
	}
	return b, nil
}

// checkInviteAs validates the delegated-invitation variables.
func (c *Config) checkInviteAs(bad func(string, string, ...any)) {
	switch c.InviteAs {
	case InviteAsApp, InviteAsInviter, InviteAsInviterOrApp:
	default:
		bad("INVITEBOT_INVITE_AS", "one of app, inviter, inviter_or_app: %q", c.InviteAs)
		return
	}
	if _, err := DecodeTokenKey(c.TokenKey.Reveal()); err != nil {
		bad("INVITEBOT_TOKEN_KEY", "%v", err)
	}
	if _, err := DecodeTokenKey(c.TokenKeyPrevious.Reveal()); err != nil {
		bad("INVITEBOT_TOKEN_KEY_PREVIOUS", "%v", err)
	}
	if c.PublicURL != "" {
		if msg := CheckPublicURL(c.PublicURL); msg != "" {
			bad("INVITEBOT_PUBLIC_URL", "%s", msg)
		}
	}
	if !c.Delegated() {
		return
	}
	if c.PublicURL == "" {
		bad("INVITEBOT_PUBLIC_URL", "required with INVITEBOT_INVITE_AS=%s (the base URL inviters' browsers reach invitebot at)", c.InviteAs)
	}
	if c.TokenKey == "" {
		bad("INVITEBOT_TOKEN_KEY", "required with INVITEBOT_INVITE_AS=%s (32 random bytes, base64: openssl rand -base64 32)", c.InviteAs)
	}
	if c.TokenKeyPrevious != "" && c.TokenKeyPrevious == c.TokenKey {
		bad("INVITEBOT_TOKEN_KEY_PREVIOUS", "equals INVITEBOT_TOKEN_KEY; set it to the key being replaced, or unset it")
	}
	if len(c.RedirectURI()) > 256 {
		bad("INVITEBOT_PUBLIC_URL", "too long: the redirect URI %s/auth/callback must be at most 256 characters", c.PublicURL)
	}
}

// CheckPublicURL returns what is wrong with a public base URL, or "": it
// must be absolute, https (http only for localhost or 127.0.0.1, as Entra
// allows for redirect URIs), without a query, fragment or wildcard.
func CheckPublicURL(v string) string {
	u, err := url.Parse(v)
	switch {
	case err != nil || u.Host == "" || u.Scheme == "":
		return fmt.Sprintf("not an absolute URL: %q", v)
	case u.Scheme == "http" && u.Hostname() != "localhost" && u.Hostname() != "127.0.0.1":
		return "must be https:// (http only for localhost or 127.0.0.1)"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be https://"
	case u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(v, "?") || strings.HasSuffix(v, "#"):
		return "must not have a query or fragment"
	case strings.Contains(v, "*"):
		return "must not contain a wildcard"
	case u.User != nil:
		return "must not contain a user name or password"
	}
	return ""
}

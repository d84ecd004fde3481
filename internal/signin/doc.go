// Package signin connects a Slack user's Microsoft account to invitebot,
// so that POST /invitations can be sent with that person's own delegated
// token (INVITEBOT_INVITE_AS=inviter or inviter_or_app).
//
// It holds all of invitebot's OAuth code: the authorization code flow with
// PKCE through MSAL for Go's confidential client, the /auth/start and
// /auth/callback handlers, and the per-person token cache, sealed with
// AES-256-GCM (Sealer) before it reaches the store. flows sees only its
// small Delegation port. Like every adapter it imports flows for the value
// types and no other adapter.
package signin

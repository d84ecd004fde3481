package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/graph"
	"github.com/invitebot/invitebot/internal/signin"
)

// delegation is flows.Delegation: the sign-in adapter's tokens, sent with
// the Graph client's InviteAs.
type delegation struct {
	signIn *signin.Service
	dir    *graph.Client
}

var _ flows.Delegation = delegation{}

// Connection implements flows.Delegation.
func (d delegation) Connection(ctx context.Context, slackUserID string) (flows.Connection, error) {
	return d.signIn.Connection(ctx, slackUserID)
}

// Ready implements flows.Delegation: a token is had (and cached for the
// invitations that follow), then dropped.
func (d delegation) Ready(ctx context.Context, slackUserID string) error {
	_, err := d.signIn.Token(ctx, slackUserID)
	return err
}

// Invite implements flows.Delegation. signIn.Do sends the POST a second
// time only after Graph answered 401 to the first: Graph refuses a token
// before it processes the request, so the first created no invitation and
// sent no Microsoft email, and the second cannot send one twice.
func (d delegation) Invite(ctx context.Context, slackUserID string, inv flows.Invite) (flows.Invited, error) {
	var res flows.Invited
	err := d.signIn.Do(ctx, slackUserID, func(ctx context.Context, tok string) error {
		var err error
		res, err = d.dir.InviteAs(ctx, tok, inv)
		return err
	})
	return res, err
}

// newSignIn builds the inviters' sign-in when INVITEBOT_INVITE_AS is not
// app (nil otherwise). svc and b are read only when a person signs in,
// after newApp has set them.
func newSignIn(cfg *config.Config, log *slog.Logger, d deps, st any, svc **flows.Service, b **bot.Bot) (*signin.Service, error) {
	if !cfg.Delegated() {
		return nil, nil
	}
	db, ok := st.(flows.SignInStore)
	if !ok {
		return nil, fmt.Errorf("INVITEBOT_INVITE_AS=%s: the store at INVITEBOT_DB does not keep sign-ins (use a bbolt file)", cfg.InviteAs)
	}
	cur, prev := cfg.TokenKeys()
	sealer, err := signin.NewSealer(cur, prev)
	if err != nil {
		return nil, fmt.Errorf("INVITEBOT_TOKEN_KEY: %w", err)
	}
	base, err := url.Parse(cfg.GraphBaseURL)
	if err != nil {
		return nil, fmt.Errorf("GRAPH_BASE_URL: %w", err)
	}
	return signin.New(signin.Config{
		TenantID: cfg.TenantID, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret.Reveal(),
		CertificatePath: cfg.CertificatePath, CertificatePassword: cfg.CertificatePassword.Reveal(),
		AuthorityHost: cfg.AuthorityHost, Scope: graph.DelegatedScope(base), PublicURL: cfg.PublicURL,
		Store: db, Sealer: sealer,
		Account: func(ctx context.Context, slackUserID string) (string, error) {
			return (*svc).AccountOf(ctx, slackUserID)
		},
		Connected: func(ctx context.Context, slackUserID string, c flows.Connection) {
			n, err := (*svc).Connected(ctx, slackUserID)
			if err != nil {
				log.ErrorContext(ctx, "resume invitations after sign-in", "slack_user", slackUserID, "err", err)
			}
			(*b).Connected(ctx, slackUserID, c, n)
		},
		HTTPClient: d.authHTTP, Logger: log.With("component", "signin"),
	})
}

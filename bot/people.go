package bot

import (
	"context"

	"github.com/invitebot/invitebot/flows"
)

var _ flows.People = (*Bot)(nil)

// UserGroupMembers returns the members of a Slack user group (S…); needs
// usergroups:read.
func (b *Bot) UserGroupMembers(ctx context.Context, id string) ([]string, error) {
	return b.api.GetUserGroupMembersContext(ctx, id)
}

// Email implements flows.People: the Slack user's profile email
// (users.info; needs users:read.email).
func (b *Bot) Email(ctx context.Context, userID string) (string, error) {
	u, err := b.api.GetUserInfoContext(ctx, userID)
	if err != nil {
		return "", err
	}
	return u.Profile.Email, nil
}

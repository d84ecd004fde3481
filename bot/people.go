package bot

import (
	"context"

	"github.com/invitebot/invitebot/flows"
)

var _ flows.People = (*Bot)(nil)

// Email implements flows.People: the Slack user's profile email
// (users.info; needs users:read.email).
func (b *Bot) Email(ctx context.Context, userID string) (string, error) {
	u, err := b.api.GetUserInfoContext(ctx, userID)
	if err != nil {
		return "", err
	}
	return u.Profile.Email, nil
}

package bot

import (
	"context"
	"fmt"

	"github.com/slack-go/slack"
)

// identity is who the bot is installed as: requests for another workspace
// or another app are refused (a signing secret shared between apps, or a
// replay from elsewhere, must not act here).
type identity struct {
	Team, Enterprise, App string
	User                  string // the bot's own user ID
}

// Identify reads the bot's workspace (auth.test) and app (bots.info). Until
// it succeeds, requests are not checked against them (the signature still
// is); serve calls it at start and retries.
func (b *Bot) Identify(ctx context.Context) error {
	r, err := b.api.AuthTestContext(ctx)
	if err != nil {
		return fmt.Errorf("auth.test: %w", err)
	}
	id := identity{Team: r.TeamID, Enterprise: r.EnterpriseID, User: r.UserID}
	if r.BotID != "" {
		bot, err := b.api.GetBotInfoContext(ctx, slack.GetBotInfoParameters{Bot: r.BotID})
		if err != nil {
			return fmt.Errorf("bots.info: %w", err)
		}
		id.App = bot.AppID
	}
	b.id.Store(&id)
	b.log.InfoContext(ctx, "slack identity", "team", id.Team, "enterprise", id.Enterprise, "app", id.App)
	return nil
}

// foreign reports whether a request names another workspace or app than
// the bot's. Fields a request does not carry are not compared; an
// Enterprise Grid org-wide install accepts every workspace of its org.
func (b *Bot) foreign(team, enterprise, app string) bool {
	id := b.id.Load()
	if id == nil {
		return false
	}
	if app != "" && id.App != "" && app != id.App {
		return true
	}
	if id.Enterprise != "" && enterprise == id.Enterprise {
		return false
	}
	return team != "" && id.Team != "" && team != id.Team
}

package slackfake

import (
	"net/http"
	"net/url"
)

// Team is the workspace the fake's bot is installed in (auth.test); the
// Player sends requests for it by default.
const Team = "T0CONTOSO"

func (s *Server) authTest(_ http.ResponseWriter, _ *http.Request, _ url.Values, _ map[string]any) any {
	return map[string]any{"ok": true, "url": "https://contoso.slack.com/", "team": "Contoso", "user": "invitebot",
		"team_id": Team, "user_id": BotUserID, "bot_id": BotID}
}

func (s *Server) botsInfo(_ http.ResponseWriter, _ *http.Request, f url.Values, _ map[string]any) any {
	if f.Get("bot") != BotID {
		return slackErr("bot_not_found")
	}
	return map[string]any{"ok": true, "bot": map[string]any{"id": BotID, "name": "invitebot", "deleted": false,
		"user_id": BotUserID, "app_id": AppID, "updated": 1700000000}}
}

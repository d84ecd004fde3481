package slackfake

import (
	"net/http"
	"net/url"
	"strings"
)

// Team is the workspace the fake's bot is installed in (auth.test); the
// Player sends requests for it by default.
const Team = "T0CONTOSO"

// SetScopes sets the bot token's scopes, which auth.test reports in its
// X-OAuth-Scopes header (as Slack does); none set: the header is absent.
func (s *Server) SetScopes(scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scopes = strings.Join(scopes, ",")
}

func (s *Server) authTest(w http.ResponseWriter, _ *http.Request, _ url.Values, _ map[string]any) any {
	s.mu.Lock()
	scopes := s.scopes
	s.mu.Unlock()
	if scopes != "" {
		w.Header().Set("X-OAuth-Scopes", scopes)
	}
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

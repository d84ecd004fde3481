package manifest_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/manifest"
)

// Ensure the manifest declares what the code serves and uses, so the Slack
// app created from it works with this build.
func TestManifestMatchesCode(t *testing.T) {
	m, err := manifest.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Features.SlashCommands) != 1 || m.Features.SlashCommands[0].Command != bot.Command {
		t.Fatalf("slash commands = %+v, want exactly %s", m.Features.SlashCommands, bot.Command)
	}
	if !m.Settings.Interactivity.IsEnabled {
		t.Error("interactivity is disabled: the dialog's submissions would never arrive")
	}
	h := bot.New(bot.Config{SigningSecret: "s"}).Handler()
	for name, raw := range map[string]string{
		"slash command": m.Features.SlashCommands[0].URL,
		"interactivity": m.Settings.Interactivity.RequestURL,
		"events":        m.Settings.EventSubscriptions.RequestURL,
	} {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" {
			t.Errorf("%s URL %q is not https", name, raw)
			continue
		}
		// An unsigned request to a served route is refused with 401;
		// an unknown route would be 404.
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, u.Path, strings.NewReader("")))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s URL path %s: status %d, want 401 (a route the bot serves)", name, u.Path, rec.Code)
		}
	}
	if !m.Features.AppHome.HomeTabEnabled {
		t.Error("the Home tab is disabled: the invitations list would never show")
	}
	if !slices.Equal(m.Settings.EventSubscriptions.BotEvents, bot.Events) {
		t.Errorf("bot events = %v, want exactly what the bot handles: %v", m.Settings.EventSubscriptions.BotEvents, bot.Events)
	}
	for _, scope := range bot.Scopes {
		if !slices.Contains(m.OAuthConfig.Scopes.Bot, scope) {
			t.Errorf("manifest lacks bot scope %s that the code uses", scope)
		}
	}
	for _, scope := range m.OAuthConfig.Scopes.Bot {
		if !slices.Contains(bot.Scopes, scope) {
			t.Errorf("manifest asks for scope %s that the code does not use", scope)
		}
	}
}

package manifest_test

import (
	"maps"
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

// The Workflow Builder step the manifest declares is the one the bot runs:
// its callback ID, its inputs and outputs (names, types, which are
// required), and the settings Slack needs before it shows the step.
func TestManifestDeclaresTheStep(t *testing.T) {
	m, err := manifest.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if !m.Settings.OrgDeployEnabled || m.Settings.FunctionRuntime != "remote" {
		t.Errorf("org_deploy_enabled = %v, function_runtime = %q: Slack adds steps only to org-ready apps with a remote runtime",
			m.Settings.OrgDeployEnabled, m.Settings.FunctionRuntime)
	}
	if !slices.Contains(m.Settings.EventSubscriptions.BotEvents, "function_executed") {
		t.Error("function_executed is not subscribed: the step would never run")
	}
	if len(m.Functions) != 1 {
		t.Fatalf("functions = %v, want exactly %s", slices.Collect(maps.Keys(m.Functions)), bot.FunctionInvite)
	}
	f, ok := m.Functions[bot.FunctionInvite]
	if !ok {
		t.Fatalf("no function %s", bot.FunctionInvite)
	}
	if f.Title == "" || len(f.Title) > 255 || len(bot.FunctionInvite) > 100 {
		t.Errorf("title %q / callback ID too long or missing", f.Title)
	}
	check := func(kind string, params map[string]manifest.Param, names []string, required func(string) bool, typ func(string) string) {
		t.Helper()
		got := slices.Sorted(maps.Keys(params))
		if want := slices.Sorted(slices.Values(names)); !slices.Equal(got, want) {
			t.Errorf("%s parameters = %v, want %v", kind, got, want)
		}
		for key, p := range params {
			if p.Name != key || p.Title == "" {
				t.Errorf("%s %s: name %q, title %q", kind, key, p.Name, p.Title)
			}
			if p.IsRequired != required(key) {
				t.Errorf("%s %s: is_required = %v", kind, key, p.IsRequired)
			}
			if p.Type != typ(key) {
				t.Errorf("%s %s: type %q, want %q", kind, key, p.Type, typ(key))
			}
		}
	}
	check("input", f.InputParameters, bot.StepInputs,
		func(n string) bool { return n == bot.StepRequester || n == bot.StepEmail },
		func(n string) string {
			if n == bot.StepRequester {
				return "slack#/types/user_context" // the runner, which a workflow author cannot forge
			}
			return "string"
		})
	check("output", f.OutputParameters, bot.StepOutputs,
		func(string) bool { return true },
		func(string) string { return "string" })
	for name := range f.OutputParameters {
		if strings.Contains(name, "redeem") || strings.Contains(name, "url") {
			t.Errorf("output %s: the redeem link is never an output", name)
		}
	}
}

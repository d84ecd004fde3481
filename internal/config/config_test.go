package config_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func validEnv() map[string]string {
	return map[string]string{
		"SLACK_BOT_TOKEN":      "xoxb-1-2-secret",
		"SLACK_SIGNING_SECRET": "signing-secret-value",
		"AZURE_TENANT_ID":      "11111111-1111-1111-1111-111111111111",
		"AZURE_CLIENT_ID":      "22222222-2222-2222-2222-222222222222",
		"AZURE_CLIENT_SECRET":  "client-secret-value",
	}
}

func TestLoadDefaults(t *testing.T) {
	c, err := config.Load(env(validEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":3000" || c.DBPath != "invitebot.db" || c.GraphBaseURL != config.DefaultGraphBaseURL ||
		c.SlackAPIURL != config.DefaultSlackAPIURL || c.PollInterval != 5*time.Minute || c.SocketMode() ||
		c.RedirectURL != config.DefaultRedirectURL || c.ScopedWriteWindow != 24*time.Hour {
		t.Errorf("defaults = %+v", c)
	}
	for v, want := range map[string]time.Duration{"6h": 6 * time.Hour, "0": -1} {
		e := validEnv()
		e["INVITEBOT_SCOPED_WRITE_WINDOW"] = v
		if c, err := config.Load(env(e)); err != nil || c.ScopedWriteWindow != want {
			t.Errorf("INVITEBOT_SCOPED_WRITE_WINDOW=%s: %v, %v", v, c.ScopedWriteWindow, err)
		}
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name string
		edit func(map[string]string)
		want string
	}{
		{"MissingBotToken", func(e map[string]string) { delete(e, "SLACK_BOT_TOKEN") }, "SLACK_BOT_TOKEN: required"},
		{"UserToken", func(e map[string]string) { e["SLACK_BOT_TOKEN"] = "xoxp-1" }, "SLACK_BOT_TOKEN: must start with xoxb-"},
		{"BadAppToken", func(e map[string]string) { e["SLACK_APP_TOKEN"] = "xoxb-1" }, "SLACK_APP_TOKEN"},
		{"NoSigningSecretInHTTPMode", func(e map[string]string) { delete(e, "SLACK_SIGNING_SECRET") }, "SLACK_SIGNING_SECRET: required in HTTP mode"},
		{"MissingTenant", func(e map[string]string) { delete(e, "AZURE_TENANT_ID") }, "AZURE_TENANT_ID: required"},
		{"ClientIDNotGUID", func(e map[string]string) { e["AZURE_CLIENT_ID"] = "app" }, "AZURE_CLIENT_ID: must be a GUID"},
		{"NoCredential", func(e map[string]string) { delete(e, "AZURE_CLIENT_SECRET") }, "AZURE_CLIENT_SECRET: required unless"},
		{"HTTPGraph", func(e map[string]string) { e["GRAPH_BASE_URL"] = "http://graph.example.com/v1.0" }, "GRAPH_BASE_URL: must be an https:// URL"},
		{"HTTPRedirect", func(e map[string]string) { e["INVITEBOT_REDIRECT_URL"] = "http://x.com" }, "INVITEBOT_REDIRECT_URL"},
		{"BadPoll", func(e map[string]string) { e["INVITEBOT_POLL_INTERVAL"] = "often" }, "INVITEBOT_POLL_INTERVAL"},
		{"PollTooShort", func(e map[string]string) { e["INVITEBOT_POLL_INTERVAL"] = "1s" }, "INVITEBOT_POLL_INTERVAL: at least"},
		{"BadScopedWindow", func(e map[string]string) { e["INVITEBOT_SCOPED_WRITE_WINDOW"] = "a day" }, "INVITEBOT_SCOPED_WRITE_WINDOW: not a duration"},
		{"ScopedWindowTooShort", func(e map[string]string) { e["INVITEBOT_SCOPED_WRITE_WINDOW"] = "5s" }, "INVITEBOT_SCOPED_WRITE_WINDOW: at least 1m"},
		{"MissingPolicyFile", func(e map[string]string) { e["INVITEBOT_CONFIG"] = "/nonexistent/policy.yaml" }, "INVITEBOT_CONFIG"},
		{"BadPostgresURL", func(e map[string]string) { e["INVITEBOT_DB"] = "postgres://u:s3cret@%zz/x" }, "INVITEBOT_DB: not a valid PostgreSQL URL"},
		{"AzureAuthOnFile", func(e map[string]string) { e["INVITEBOT_DB_AZURE_AUTH"] = "1" }, "INVITEBOT_DB_AZURE_AUTH: needs INVITEBOT_DB"},
		{"BadAzureAuth", func(e map[string]string) { e["INVITEBOT_DB_AZURE_AUTH"] = "yes" }, "INVITEBOT_DB_AZURE_AUTH: 1 or 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validEnv()
			tt.edit(e)
			_, err := config.Load(env(e))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPostgresDB(t *testing.T) {
	e := validEnv()
	e["INVITEBOT_DB"] = "postgresql://invitebot:s3cret@db.example.com/invitebot?sslmode=verify-full"
	e["INVITEBOT_DB_AZURE_AUTH"] = "1"
	c, err := config.Load(env(e))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Postgres() || !c.DBAzureAuth {
		t.Errorf("Postgres() = %v, DBAzureAuth = %v; want true, true", c.Postgres(), c.DBAzureAuth)
	}
	for _, db := range []string{c.DBPath, "postgres://db.example.com/x?password=s3cret"} {
		if got := config.RedactDB(db); strings.Contains(got, "s3cret") || !strings.Contains(got, "db.example.com") {
			t.Errorf("RedactDB(%q) = %q", db, got)
		}
	}
	if got := config.RedactDB("/var/lib/invitebot.db"); got != "/var/lib/invitebot.db" {
		t.Errorf("RedactDB of a path = %q", got)
	}
}

func TestSocketModeNeedsNoSigningSecret(t *testing.T) {
	e := validEnv()
	delete(e, "SLACK_SIGNING_SECRET")
	e["SLACK_APP_TOKEN"] = "xapp-1-2"
	c, err := config.Load(env(e))
	if err != nil {
		t.Fatal(err)
	}
	if !c.SocketMode() {
		t.Error("SocketMode() = false with SLACK_APP_TOKEN set")
	}
}

// Ensure secrets never print, whichever way a config is formatted or logged.
func TestSecretsNeverPrint(t *testing.T) {
	c, err := config.Load(env(validEnv()))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%v %+v %#v %s", c, c, c, c.SlackBotToken)
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("cfg", "token", c.SlackBotToken, "secret", c.ClientSecret)
	for _, s := range []string{"xoxb-1-2-secret", "signing-secret-value", "client-secret-value"} {
		if strings.Contains(sb.String(), s) {
			t.Errorf("secret %q printed: %s", s, sb.String())
		}
	}
}

func TestPolicyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	data := `admins: [U0123ABCD]
groups:
  - name: Partner portal users
    id: 11111111-2222-3333-4444-555555555555
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	e := validEnv()
	e["INVITEBOT_CONFIG"] = path
	c, err := config.Load(env(e))
	if err != nil {
		t.Fatal(err)
	}
	p := c.FlowsPolicy()
	if !p.IsAdmin("U0123ABCD") || len(p.Groups) != 1 || p.Groups[0].Name != "Partner portal users" {
		t.Errorf("policy = %+v", p)
	}
}

func TestParsePolicyErrorsNameLineAndField(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"BadAdmin", "admins: [U0123ABCD, bob]\n", "line 1: admins[1]"},
		{"GroupNotGUID", "groups:\n  - name: A\n    id: nope\n", "line 3: groups[0].id"},
		{"GroupNoName", "groups:\n  - id: 11111111-2222-3333-4444-555555555555\n", "groups[0].name: required"},
		{"DuplicateGroup", "groups:\n  - {name: A, id: 11111111-2222-3333-4444-555555555555}\n  - {name: B, id: 11111111-2222-3333-4444-555555555555}\n", "line 3: groups[1].id"},
		{"UnknownNestedKey", "groups:\n  - nmae: A\n    id: 11111111-2222-3333-4444-555555555555\n", "field nmae not found"},
		{"BadTemplate", "templates:\n  invitation: \"{{.Nope\"\n", "line 2: templates.invitation"},
		{"NotYAML", "groups: [\n", "yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParsePolicy([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParsePolicy error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// Unknown top-level keys (a typo, or a newer version's setting after a
// rollback) are ignored with a warning naming the line; start-up goes on.
func TestParsePolicyWarnsOnUnknownTopLevelKeys(t *testing.T) {
	p, err := config.ParsePolicy([]byte("admins: [U0123ABCD]\napprovers: [U0456]\nadmin: [U0999]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`line 2: unknown key "approvers" ignored`, `line 3: unknown key "admin" ignored`}
	if len(p.Warnings) != 2 || !strings.HasPrefix(p.Warnings[0], want[0]) || !strings.HasPrefix(p.Warnings[1], want[1]) {
		t.Errorf("warnings = %q, want %q…", p.Warnings, want)
	}
	if len(p.Admins) != 1 || p.Admins[0] != "U0123ABCD" {
		t.Errorf("admins = %v", p.Admins)
	}
}

func TestDefaultInvitationTemplateRenders(t *testing.T) {
	tmpl, err := (&config.Policy{}).InvitationTemplate()
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	err = tmpl.Execute(&sb, map[string]string{"GuestName": "Bob", "GuestEmail": "bob@x.com", "RedeemURL": "https://r", "Message": "Welcome", "InviterName": "Ann"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Hi Bob", "Ann has invited you", "Welcome", "https://r", "bob@x.com"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("template output lacks %q:\n%s", want, sb.String())
		}
	}
}

func TestExamplePolicyParses(t *testing.T) {
	p, err := config.ParsePolicy(config.Example)
	if err != nil {
		t.Fatalf("the shipped example does not parse: %v", err)
	}
	if len(p.Warnings) != 0 {
		t.Errorf("warnings: %v", p.Warnings)
	}
	fp := p.Flows("https://myapplications.microsoft.com")
	if len(fp.Domains.Rules) != 4 || fp.Domains.Default != "approve" || fp.ApprovalChannel != "C0APPROVALS" ||
		fp.ApprovalTTL != 72*time.Hour || len(fp.Groups[1].Approvers) != 2 || len(fp.Inviters) != 3 ||
		fp.Expiry != 90*24*time.Hour || fp.ExpiryWarning != 7*24*time.Hour || fp.ExpiryAction != flows.ExpireRemoveGroups ||
		fp.RemindAfter != 3*24*time.Hour {
		t.Errorf("flows policy = %+v", fp)
	}
	if d := fp.Decide(flows.Request{Email: "bob@gmail.com"}, "U0456EFGH"); !strings.Contains(d.Denied, "company address") {
		t.Errorf("gmail.com: %+v", d)
	}
}

func TestParsePolicyGovernanceErrors(t *testing.T) {
	const groups = "groups:\n  - {name: A, id: 11111111-2222-3333-4444-555555555555}\n"
	tests := []struct{ name, yaml, want string }{
		{"Inviter", "inviters: [bob]\n", "line 1: inviters[0]"},
		{"GroupApprover", "groups:\n  - name: A\n    id: 11111111-2222-3333-4444-555555555555\n    approvers: [nope]\n", "line 4: groups[0].approvers[0]"},
		{"DefaultAction", "domains:\n  default: maybe\n", "line 2: domains.default"},
		{"RuleDomain", "domains:\n  rules:\n    - domain: not a domain\n      action: allow\n", "line 3: domains.rules[0].domain"},
		{"RuleAction", "domains:\n  rules:\n    - domain: fabrikam.com\n      action: approved\n", "line 4: domains.rules[0].action"},
		{"RuleTwice", "domains:\n  rules:\n    - {domain: fabrikam.com, action: allow}\n    - {domain: Fabrikam.com, action: deny}\n", "domains.rules[1].domain: Fabrikam.com has two rules"},
		{"RuleUserType", "domains:\n  rules:\n    - {domain: fabrikam.com, action: allow, user_type: Admin}\n", "domains.rules[0].user_type"},
		{"RuleGroupNotOffered", groups + "domains:\n  rules:\n    - domain: fabrikam.com\n      action: allow\n      groups: [99999999-2222-3333-4444-555555555555]\n", "line 7: domains.rules[0].groups[0]"},
		{"RuleRedirect", "domains:\n  rules:\n    - {domain: fabrikam.com, action: allow, redirect_url: \"http://x.com\"}\n", "domains.rules[0].redirect_url"},
		{"Channel", "approvals:\n  channel: \"#approvals\"\n", "line 2: approvals.channel"},
		{"Expiry", "approvals:\n  expire_after: 5m\n", "line 2: approvals.expire_after"},
		{"Approver", "approvals:\n  approvers: [x]\n", "approvals.approvers[0]"},
		{"ExpiryDefault", "expiry:\n  default: 90\n", "line 2: expiry.default"},
		{"ExpiryTooShort", "expiry:\n  remind_before: 1h\n", "line 2: expiry.remind_before"},
		{"ExpiryAction", "expiry:\n  action: delete\n", "line 2: expiry.action"},
		{"ReminderAge", "reminders:\n  pending_after: soon\n", "line 2: reminders.pending_after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.ParsePolicy([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParsePolicy error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

package config_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
		c.RedirectURL != config.DefaultRedirectURL || c.ScopedWriteWindow != 24*time.Hour || c.LeaseTTL != 15*time.Second {
		t.Errorf("defaults = %+v", c)
	}
	e := validEnv()
	e["INVITEBOT_LEASE_TTL"] = "30s"
	if c, err = config.Load(env(e)); err != nil {
		t.Fatal(err)
	}
	if c.LeaseTTL != 30*time.Second {
		t.Errorf("INVITEBOT_LEASE_TTL=30s: LeaseTTL = %v", c.LeaseTTL)
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
		{"BadLeaseTTL", func(e map[string]string) { e["INVITEBOT_LEASE_TTL"] = "soon" }, "INVITEBOT_LEASE_TTL: not a duration"},
		{"LeaseTTLTooShort", func(e map[string]string) { e["INVITEBOT_LEASE_TTL"] = "4s" }, "INVITEBOT_LEASE_TTL: at least 5s"},
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

// Ensure every secret can come from a VAR_FILE, its trailing newline
// trimmed, and that the errors about it never show the secret.
func TestLoadSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e := validEnv()
	delete(e, "SLACK_BOT_TOKEN")
	delete(e, "AZURE_CLIENT_SECRET")
	e["SLACK_BOT_TOKEN_FILE"] = write("bot", "xoxb-from-file\n")
	e["AZURE_CLIENT_SECRET_FILE"] = write("azure", "client-secret-from-file\r\n")
	c, err := config.Load(env(e))
	if err != nil {
		t.Fatal(err)
	}
	if c.SlackBotToken.Reveal() != "xoxb-from-file" || c.ClientSecret.Reveal() != "client-secret-from-file" {
		t.Errorf("from files: bot %q, client secret %q", c.SlackBotToken.Reveal(), c.ClientSecret.Reveal())
	}

	tests := []struct {
		name string
		edit func(map[string]string)
		want string
	}{
		{"Both", func(e map[string]string) { e["SLACK_SIGNING_SECRET_FILE"] = write("sig", "other\n") },
			"SLACK_SIGNING_SECRET and SLACK_SIGNING_SECRET_FILE: both are set"},
		{"Missing", func(e map[string]string) { e["SLACK_APP_TOKEN_FILE"] = filepath.Join(dir, "nope") },
			"SLACK_APP_TOKEN_FILE: open " + filepath.Join(dir, "nope")},
		{"Empty", func(e map[string]string) { e["AZURE_CLIENT_CERTIFICATE_PASSWORD_FILE"] = write("empty", "\n") },
			"AZURE_CLIENT_CERTIFICATE_PASSWORD_FILE: " + filepath.Join(dir, "empty") + " is empty"},
		{"BadValue", func(e map[string]string) {
			delete(e, "SLACK_BOT_TOKEN")
			e["SLACK_BOT_TOKEN_FILE"] = write("user", "xoxp-secret-user-token\n")
		}, "SLACK_BOT_TOKEN: must start with xoxb-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validEnv()
			tt.edit(e)
			_, err := config.Load(env(e))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			for _, secret := range []string{"other", "xoxp-secret-user-token", "signing-secret-value"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error shows a secret: %v", err)
				}
			}
		})
	}
	for _, k := range []string{"INVITEBOT_TOKEN_KEY", "INVITEBOT_TOKEN_KEY_PREVIOUS"} {
		if !slices.Contains(config.SecretVars, k) {
			t.Errorf("%s cannot be given as a file", k)
		}
	}
}

// Ensure the configuration's errors come out in the same (sorted) order
// every time.
func TestLoadErrorsSorted(t *testing.T) {
	e := map[string]string{"AZURE_CLIENT_ID": "app", "INVITEBOT_POLL_INTERVAL": "often", "LOG_LEVEL": "loud"}
	_, err := config.Load(env(e))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if !slices.IsSorted(lines) || len(lines) < 5 {
		t.Errorf("errors not sorted:\n%s", err)
	}
	for range 20 {
		if _, again := config.Load(env(e)); again.Error() != err.Error() {
			t.Fatalf("errors differ between runs:\n%s\n--\n%s", err, again)
		}
	}
}

// Ensure the environment and the policy file accept the same durations.
func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"72h": 72 * time.Hour, "3d": 72 * time.Hour, "1d12h": 36 * time.Hour, "90m": 90 * time.Minute, "0d": 0,
	} {
		if got, err := config.ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "3days", "-1d", "1d-2h", "often", "3 d"} {
		if got, err := config.ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
	e := validEnv()
	e["INVITEBOT_REMIND_AFTER"] = "3d"
	e["INVITEBOT_POLL_INTERVAL"] = "1h"
	c, err := config.Load(env(e))
	if err != nil || c.RemindAfter != 72*time.Hour || c.PollInterval != time.Hour {
		t.Errorf("INVITEBOT_REMIND_AFTER=3d: %v, %v", c, err)
	}
	p, err := config.ParsePolicy([]byte("reminders:\n  pending_after: 72h\napprovals:\n  expire_after: 2d\n"))
	if err != nil || p.ApprovalTTL() != 48*time.Hour {
		t.Errorf("policy durations: %v", err)
	}
}

// Ensure an unknown key with a nested value is reported at the key's line.
func TestParsePolicyWarningLine(t *testing.T) {
	p, err := config.ParsePolicy([]byte("admins: [U0123ABCD]\ndomain:\n  default: deny\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 1 || !strings.HasPrefix(p.Warnings[0], `line 2: unknown key "domain"`) {
		t.Errorf("warnings = %q, want line 2", p.Warnings)
	}
}

// Ensure a command that receives nothing from Slack (bulk) does not need
// the signing secret.
func TestLoadOutbound(t *testing.T) {
	e := validEnv()
	delete(e, "SLACK_SIGNING_SECRET")
	if _, err := config.LoadOutbound(env(e)); err != nil {
		t.Errorf("LoadOutbound without SLACK_SIGNING_SECRET: %v", err)
	}
	if _, err := config.Load(env(e)); err == nil || !strings.Contains(err.Error(), "SLACK_SIGNING_SECRET") {
		t.Errorf("Load without SLACK_SIGNING_SECRET: %v", err)
	}
}

func TestCredentialSelection(t *testing.T) {
	cert := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(map[string]string)
		want string // CredentialKind, or "error: …"
	}{
		{"Secret", func(map[string]string) {}, "client secret"},
		{"SecretWinsOverManagedIdentity", func(e map[string]string) { e["IDENTITY_ENDPOINT"] = "http://localhost:42356/msi/token" }, "client secret"},
		{"Certificate", func(e map[string]string) { delete(e, "AZURE_CLIENT_SECRET"); e["AZURE_CLIENT_CERTIFICATE_PATH"] = cert }, "client certificate"},
		{"Workload", func(e map[string]string) {
			delete(e, "AZURE_CLIENT_SECRET")
			e["AZURE_FEDERATED_TOKEN_FILE"] = "/var/run/secrets/azure/tokens/azure-identity-token"
			e["IDENTITY_ENDPOINT"] = "http://localhost:42356/msi/token"
		}, "workload identity"},
		{"AppServiceUserAssigned", func(e map[string]string) {
			delete(e, "AZURE_CLIENT_SECRET")
			e["IDENTITY_ENDPOINT"] = "http://localhost:42356/msi/token"
		}, "managed identity (user-assigned, client ID 22222222-2222-2222-2222-222222222222)"},
		{"ArcSystemAssigned", func(e map[string]string) {
			delete(e, "AZURE_CLIENT_SECRET")
			delete(e, "AZURE_CLIENT_ID")
			e["IMDS_ENDPOINT"] = "http://localhost:40342"
		}, "managed identity (system-assigned)"},
		{"Nothing", func(e map[string]string) { delete(e, "AZURE_CLIENT_SECRET") }, "error: AZURE_CLIENT_SECRET: required unless"},
		{"NoClientIDWithoutManagedIdentity", func(e map[string]string) { delete(e, "AZURE_CLIENT_ID") }, "error: AZURE_CLIENT_ID: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := validEnv()
			tt.edit(e)
			c, err := config.Load(env(e))
			got := ""
			if err != nil {
				got = "error: " + err.Error()
			} else {
				got = c.CredentialKind()
			}
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if err == nil && c.ManagedIdentity != strings.HasPrefix(tt.want, "managed identity") {
				t.Errorf("ManagedIdentity = %v for %q", c.ManagedIdentity, got)
			}
		})
	}
}

// LoadStore (store copy, audit export) requires nothing but what the
// store needs: the Entra credential only with INVITEBOT_DB_AZURE_AUTH on.
func TestLoadStore(t *testing.T) {
	// No Slack, no Azure, a broken policy path: not the store's business.
	c, err := config.LoadStore(env(map[string]string{"INVITEBOT_CONFIG": "/nonexistent/policy.yaml", "INVITEBOT_POLL_INTERVAL": "often"}))
	if err != nil || c.DBAzureAuth || c.DBPath != config.DefaultDB {
		t.Fatalf("LoadStore = %+v, %v", c, err)
	}
	// The switch without INVITEBOT_DB: store copy names its stores itself.
	e := validEnv()
	delete(e, "SLACK_BOT_TOKEN")
	e["INVITEBOT_DB_AZURE_AUTH"] = "1"
	if c, err := config.LoadStore(env(e)); err != nil || !c.DBAzureAuth || c.TenantID == "" || c.ClientSecret.Reveal() == "" {
		t.Fatalf("LoadStore with the switch = %+v, %v", c, err)
	}
	// With it on, the credential's variables are required.
	delete(e, "AZURE_CLIENT_SECRET")
	if _, err := config.LoadStore(env(e)); err == nil || !strings.Contains(err.Error(), "AZURE_CLIENT_SECRET: required") ||
		strings.Contains(err.Error(), "SLACK") {
		t.Errorf("LoadStore without a credential = %v", err)
	}
	if _, err := config.LoadStore(env(map[string]string{"INVITEBOT_DB_AZURE_AUTH": "yes"})); err == nil ||
		!strings.Contains(err.Error(), "INVITEBOT_DB_AZURE_AUTH: 1 or 0") {
		t.Errorf("LoadStore with a bad switch = %v", err)
	}
}

// Package config reads invitebot's configuration from the environment and
// the optional policy file (INVITEBOT_CONFIG), and validates it at start-up.
// Every error names the variable or the file line it is about. Secrets are
// of type Secret, which never prints its value.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/invitebot/invitebot/flows"
)

// Secret is a credential. It formats and logs as "REDACTED".
type Secret string

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return s.String() }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Reveal returns the secret's value, for the one place that uses it.
func (s Secret) Reveal() string { return string(s) }

// Defaults of the optional variables.
const (
	DefaultSlackAPIURL   = "https://slack.com/api/"
	DefaultGraphBaseURL  = "https://graph.microsoft.com/v1.0"
	DefaultAddr          = ":3000"
	DefaultDB            = "invitebot.db"
	DefaultRedirectURL   = "https://myapplications.microsoft.com"
	DefaultPollInterval  = 5 * time.Minute
	DefaultLeaseTTL      = 15 * time.Second
	MinLeaseTTL          = 5 * time.Second
	DefaultRemindAfter   = 72 * time.Hour
	DefaultAuthorityHost = "https://login.microsoftonline.com/"
)

// Config is invitebot's whole configuration.
type Config struct {
	SlackBotToken      Secret // SLACK_BOT_TOKEN, xoxb-…
	SlackSigningSecret Secret // SLACK_SIGNING_SECRET; required in HTTP mode
	SlackAppToken      Secret // SLACK_APP_TOKEN, xapp-…; set = Socket Mode
	SlackAPIURL        string // SLACK_API_URL

	TenantID            string // AZURE_TENANT_ID
	ClientID            string // AZURE_CLIENT_ID
	ClientSecret        Secret // AZURE_CLIENT_SECRET
	CertificatePath     string // AZURE_CLIENT_CERTIFICATE_PATH
	CertificatePassword Secret // AZURE_CLIENT_CERTIFICATE_PASSWORD
	FederatedTokenFile  string // AZURE_FEDERATED_TOKEN_FILE (workload identity)
	AuthorityHost       string // AZURE_AUTHORITY_HOST; "" = public cloud
	GraphBaseURL        string // GRAPH_BASE_URL

	// ManagedIdentity is set when no client secret, certificate or
	// federated token file is configured and Azure's managed identity
	// endpoint is present (ManagedIdentityEnv): AZURE_CLIENT_ID, if set,
	// then selects a user-assigned identity.
	ManagedIdentity bool

	Addr         string        // INVITEBOT_ADDR
	DBPath       string        // INVITEBOT_DB: a bbolt file, or a PostgreSQL URL (see Postgres)
	DBAzureAuth  bool          // INVITEBOT_DB_AZURE_AUTH: PostgreSQL password = Entra access token
	PolicyPath   string        // INVITEBOT_CONFIG
	RedirectURL  string        // INVITEBOT_REDIRECT_URL
	PollInterval time.Duration // INVITEBOT_POLL_INTERVAL
	LeaseTTL     time.Duration // INVITEBOT_LEASE_TTL: the background lease's life without a renewal
	RemindAfter  time.Duration // INVITEBOT_REMIND_AFTER; 0: no reminders
	// ScopedWriteWindow is INVITEBOT_SCOPED_WRITE_WINDOW: how long attribute
	// and sponsor writes Entra refuses (403) are retried; negative ("0"):
	// not retried.
	ScopedWriteWindow time.Duration
	LogLevel          slog.Level // LOG_LEVEL: debug, info, warn, error
	LogFormat         string     // LOG_FORMAT: json, text ("" = json, text on a terminal)

	// Bulk CSV invitations.
	BulkMaxBytes    int64 // INVITEBOT_BULK_MAX_BYTES
	BulkMaxRows     int   // INVITEBOT_BULK_MAX_ROWS
	BulkConcurrency int   // INVITEBOT_BULK_CONCURRENCY

	// Inviting as the inviter (delegated POST /invitations).
	InviteAs         string // INVITEBOT_INVITE_AS: app, inviter or inviter_or_app
	PublicURL        string // INVITEBOT_PUBLIC_URL, without a trailing slash
	TokenKey         Secret // INVITEBOT_TOKEN_KEY: 32 bytes, base64
	TokenKeyPrevious Secret // INVITEBOT_TOKEN_KEY_PREVIOUS: the key before a rotation

	Policy *Policy // from PolicyPath; an empty policy when unset
}

// ManagedIdentityEnv are the variables Azure sets where a managed identity
// endpoint is available (azidentity's ManagedIdentityCredential reads
// them): App Service, Functions and Container Apps (IDENTITY_ENDPOINT),
// Azure Arc (IMDS_ENDPOINT), Cloud Shell (MSI_ENDPOINT).
var ManagedIdentityEnv = []string{"IDENTITY_ENDPOINT", "IMDS_ENDPOINT", "MSI_ENDPOINT"}

// CredentialKind names the Entra credential the configuration selects, in
// this order: "client secret", "client certificate", "workload identity"
// (a federated token file), "managed identity"; "" if none.
func (c *Config) CredentialKind() string {
	switch {
	case c.ClientSecret != "":
		return "client secret"
	case c.CertificatePath != "":
		return "client certificate"
	case c.FederatedTokenFile != "":
		return "workload identity"
	case c.ManagedIdentity:
		if c.ClientID != "" {
			return "managed identity (user-assigned, client ID " + c.ClientID + ")"
		}
		return "managed identity (system-assigned)"
	}
	return ""
}

// Postgres reports whether INVITEBOT_DB names a PostgreSQL database
// rather than a bbolt file.
func (c *Config) Postgres() bool { return IsPostgresURL(c.DBPath) }

// IsPostgresURL reports whether db (INVITEBOT_DB, or an argument naming a
// store) is a postgres:// or postgresql:// URL rather than a file path.
func IsPostgresURL(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// RedactDB returns db for logs and messages: a URL's password masked.
func RedactDB(db string) string {
	if !IsPostgresURL(db) {
		return db
	}
	u, err := url.Parse(db)
	if err != nil {
		return "(a PostgreSQL URL that does not parse)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// SocketMode reports whether the bot connects over Socket Mode.
func (c *Config) SocketMode() bool { return c.SlackAppToken != "" }

// FlowsPolicy returns the policy in flows' terms.
func (c *Config) FlowsPolicy() flows.Policy {
	return c.Policy.Flows(c.RedirectURL)
}

// Flows returns the policy in flows' terms, with redirect as the default
// redirect URL.
func (pol *Policy) Flows(redirect string) flows.Policy {
	p := flows.Policy{Admins: pol.Admins, DefaultRedirectURL: redirect, Inviters: pol.Inviters,
		Approvers: pol.Approvals.Approvers, ApprovalChannel: pol.Approvals.Channel, ApprovalTTL: pol.ApprovalTTL(),
		Domains:      flows.DomainPolicy{Default: flows.DomainAction(pol.Domains.Default)},
		ExpiryAction: flows.ExpiryAction(pol.Expiry.Action)}
	p.Expiry, _ = ParseDuration(pol.Expiry.Default)
	p.ExpiryWarning, _ = ParseDuration(pol.Expiry.RemindBefore)
	switch v := pol.Reminders.PendingAfter; v {
	case "":
	case "0":
		p.RemindAfter = -1
	default:
		p.RemindAfter, _ = ParseDuration(v)
	}
	for _, g := range pol.Groups {
		p.Groups = append(p.Groups, flows.Group{Name: g.Name, ID: strings.ToLower(g.ID), Approvers: g.Approvers})
	}
	for _, r := range pol.Domains.Rules {
		p.Domains.Rules = append(p.Domains.Rules, flows.DomainRule{Domain: strings.ToLower(r.Domain), Action: flows.DomainAction(r.Action),
			Reason: r.Reason, UserType: flows.UserType(r.UserType), Groups: lower(r.Groups), RedirectURL: r.RedirectURL, Message: r.Message})
	}
	return p
}

// Env lists every variable Load reads, with its meaning, for --help.
var Env = [][2]string{
	{"SLACK_BOT_TOKEN", "bot token, xoxb-… (required)"},
	{"SLACK_SIGNING_SECRET", "request signing secret (required in HTTP mode)"},
	{"SLACK_APP_TOKEN", "app-level token xapp-…; when set, Socket Mode is used"},
	{"SLACK_API_URL", "Slack Web API base URL (default " + DefaultSlackAPIURL + ")"},
	{"AZURE_TENANT_ID", "Entra tenant ID (required)"},
	{"AZURE_CLIENT_ID", "app registration's client ID (required; with a managed identity: selects a user-assigned one)"},
	{"AZURE_CLIENT_SECRET", "client secret (or a certificate or workload identity)"},
	{"AZURE_CLIENT_CERTIFICATE_PATH", "PEM/PFX certificate with private key"},
	{"AZURE_CLIENT_CERTIFICATE_PASSWORD", "password of the certificate, if any"},
	{"AZURE_FEDERATED_TOKEN_FILE", "workload identity token file (Kubernetes)"},
	{"IDENTITY_ENDPOINT", "set by Azure (with IMDS_ENDPOINT, MSI_ENDPOINT) where a managed identity is available: used when no secret, certificate or token file is set"},
	{"AZURE_AUTHORITY_HOST", "token authority (default public cloud)"},
	{"GRAPH_BASE_URL", "Graph base URL incl. version (default " + DefaultGraphBaseURL + ")"},
	{"INVITEBOT_ADDR", "HTTP listen address (default " + DefaultAddr + ")"},
	{"INVITEBOT_DB", "bbolt file (one replica), or a postgres:// URL (any number of replicas; PG* variables fill gaps) (default " + DefaultDB + ")"},
	{"INVITEBOT_DB_AZURE_AUTH", "1: the PostgreSQL password is a Microsoft Entra token from the Graph credential (Azure Database for PostgreSQL)"},
	{"INVITEBOT_CONFIG", "policy file (YAML): admins, inviters, groups, domains, approvals, expiry, reminders, templates; see `invitebot policy example`"},
	{"INVITEBOT_REDIRECT_URL", "default inviteRedirectUrl (default " + DefaultRedirectURL + ")"},
	{"INVITEBOT_POLL_INTERVAL", "acceptance check interval (default 5m)"},
	{"INVITEBOT_LEASE_TTL", "how long the replica running the background work holds its lease without renewing it; another takes over after it lapses (default 15s, at least 5s)"},
	{"INVITEBOT_REMIND_AFTER", "remind the inviter once when an invitation is pending this long; 0 disables (default 72h)"},
	{"INVITEBOT_SCOPED_WRITE_WINDOW", "how long attribute and sponsor writes Entra refuses (403) to a new guest are retried in the background; 0 disables (default 24h)"},
	{"INVITEBOT_BULK_MAX_BYTES", "largest bulk CSV file accepted, in bytes (default 1048576)"},
	{"INVITEBOT_BULK_MAX_ROWS", "most rows in a bulk CSV file (default 2000)"},
	{"INVITEBOT_BULK_CONCURRENCY", "bulk rows in flight at once (default 16); POST /invitations stays under Graph's 150 per 5 s"},
	{"INVITEBOT_INVITE_AS", "whose token POST /invitations uses: app, inviter or inviter_or_app (default app)"},
	{"INVITEBOT_PUBLIC_URL", "base URL inviters' browsers reach invitebot at; redirect URI = this + /auth/callback (required unless INVITEBOT_INVITE_AS=app)"},
	{"INVITEBOT_TOKEN_KEY", "32 random bytes, base64: encrypts stored sign-in tokens (required unless INVITEBOT_INVITE_AS=app)"},
	{"INVITEBOT_TOKEN_KEY_PREVIOUS", "the previous INVITEBOT_TOKEN_KEY, still read during a rotation"},
	{"LOG_LEVEL", "debug, info, warn or error (default info)"},
	{"VAR_FILE", "a file holding the value of VAR, for each secret: " + strings.Join(SecretVars, ", ") + " (Docker and Kubernetes secrets; not both VAR and VAR_FILE)"},
	{"LOG_FORMAT", "json or text (default json; text on a terminal)"},
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Load reads the configuration through getenv (os.Getenv in main) and
// validates it. The error lists every problem, one per line, each naming
// its variable.
func Load(getenv func(string) string) (*Config, error) { return load(getenv, modeServe) }

// LoadOutbound is Load for commands that call Slack but receive nothing
// from it (invitebot bulk): SLACK_SIGNING_SECRET is not required.
func LoadOutbound(getenv func(string) string) (*Config, error) { return load(getenv, modeOutbound) }

// LoadStore is Load for the commands that only open stores (store copy,
// audit export): it reads INVITEBOT_DB and INVITEBOT_DB_AZURE_AUTH and,
// when that is on, the Entra credential's variables (AZURE_*), which the
// database's tokens come from. Nothing else is read or required.
func LoadStore(getenv func(string) string) (*Config, error) { return load(getenv, modeStore) }

// What load is loading for.
const (
	modeServe    = iota // everything
	modeOutbound        // no SLACK_SIGNING_SECRET (invitebot bulk)
	modeStore           // the store and, with INVITEBOT_DB_AZURE_AUTH, the Entra credential
)

func load(getenv func(string) string, mode int) (*Config, error) {
	getenv, errs := withSecretFiles(getenv)
	get := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	c := &Config{
		SlackBotToken:       Secret(get("SLACK_BOT_TOKEN", "")),
		SlackSigningSecret:  Secret(get("SLACK_SIGNING_SECRET", "")),
		SlackAppToken:       Secret(get("SLACK_APP_TOKEN", "")),
		SlackAPIURL:         get("SLACK_API_URL", DefaultSlackAPIURL),
		TenantID:            get("AZURE_TENANT_ID", ""),
		ClientID:            get("AZURE_CLIENT_ID", ""),
		ClientSecret:        Secret(get("AZURE_CLIENT_SECRET", "")),
		CertificatePath:     get("AZURE_CLIENT_CERTIFICATE_PATH", ""),
		CertificatePassword: Secret(get("AZURE_CLIENT_CERTIFICATE_PASSWORD", "")),
		FederatedTokenFile:  get("AZURE_FEDERATED_TOKEN_FILE", ""),
		AuthorityHost:       get("AZURE_AUTHORITY_HOST", ""),
		GraphBaseURL:        get("GRAPH_BASE_URL", DefaultGraphBaseURL),
		Addr:                get("INVITEBOT_ADDR", DefaultAddr),
		DBPath:              get("INVITEBOT_DB", DefaultDB),
		PolicyPath:          get("INVITEBOT_CONFIG", ""),
		RedirectURL:         get("INVITEBOT_REDIRECT_URL", DefaultRedirectURL),
		LogFormat:           get("LOG_FORMAT", ""),
		InviteAs:            get("INVITEBOT_INVITE_AS", InviteAsApp),
		PublicURL:           strings.TrimSuffix(get("INVITEBOT_PUBLIC_URL", ""), "/"),
		TokenKey:            Secret(get("INVITEBOT_TOKEN_KEY", "")),
		TokenKeyPrevious:    Secret(get("INVITEBOT_TOKEN_KEY_PREVIOUS", "")),
	}
	bad := func(k, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{k}, a...)...))
	}

	switch tok := c.SlackBotToken.Reveal(); {
	case tok == "":
		bad("SLACK_BOT_TOKEN", "required (the bot token, xoxb-…)")
	case !strings.HasPrefix(tok, "xoxb-"):
		bad("SLACK_BOT_TOKEN", "must start with xoxb- (a bot token)")
	}
	if tok := c.SlackAppToken.Reveal(); tok != "" && !strings.HasPrefix(tok, "xapp-") {
		bad("SLACK_APP_TOKEN", "must start with xapp- (an app-level token with connections:write)")
	}
	if mode == modeServe && !c.SocketMode() && c.SlackSigningSecret == "" {
		bad("SLACK_SIGNING_SECRET", "required in HTTP mode (or set SLACK_APP_TOKEN for Socket Mode)")
	}
	checkURL(bad, "SLACK_API_URL", c.SlackAPIURL, true)
	if !strings.HasSuffix(c.SlackAPIURL, "/") {
		c.SlackAPIURL += "/"
	}
	c.ManagedIdentity = c.ClientSecret == "" && c.CertificatePath == "" && c.FederatedTokenFile == "" &&
		slices.ContainsFunc(ManagedIdentityEnv, func(k string) bool { return get(k, "") != "" })
	for k, v := range map[string]string{"AZURE_TENANT_ID": c.TenantID, "AZURE_CLIENT_ID": c.ClientID} {
		switch {
		case v == "" && k == "AZURE_CLIENT_ID" && c.ManagedIdentity:
			// the system-assigned identity
		case v == "":
			bad(k, "required")
		case !guidRE.MatchString(v) && k == "AZURE_CLIENT_ID":
			bad(k, "must be a GUID (the app registration's Application (client) ID)")
		}
	}
	if c.CredentialKind() == "" {
		bad("AZURE_CLIENT_SECRET", "required unless AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE is set, or a managed identity is available (%s)",
			strings.Join(ManagedIdentityEnv, ", "))
	}
	if c.CertificatePath != "" {
		if _, err := os.Stat(c.CertificatePath); err != nil {
			bad("AZURE_CLIENT_CERTIFICATE_PATH", "%v", err)
		}
	}
	if c.AuthorityHost != "" {
		checkURL(bad, "AZURE_AUTHORITY_HOST", c.AuthorityHost, false)
	}
	checkURL(bad, "GRAPH_BASE_URL", c.GraphBaseURL, true)
	c.GraphBaseURL = strings.TrimSuffix(c.GraphBaseURL, "/")
	if msg := flows.CheckRedirectURL(c.RedirectURL); msg != "" {
		bad("INVITEBOT_REDIRECT_URL", "%s", msg)
	}
	if c.Postgres() {
		if _, err := url.Parse(c.DBPath); err != nil {
			bad("INVITEBOT_DB", "not a valid PostgreSQL URL (postgres://user@host/database?sslmode=verify-full)")
		}
	}
	switch v := get("INVITEBOT_DB_AZURE_AUTH", ""); v {
	case "", "0", "false":
	case "1", "true":
		c.DBAzureAuth = true
		if !c.Postgres() && mode != modeStore { // store copy names its stores itself
			bad("INVITEBOT_DB_AZURE_AUTH", "needs INVITEBOT_DB to be a postgres:// URL")
		}
	default:
		bad("INVITEBOT_DB_AZURE_AUTH", "1 or 0: %q", v)
	}
	c.PollInterval = minDuration(get, bad, "INVITEBOT_POLL_INTERVAL", DefaultPollInterval, 10*time.Second, "5m", "Graph throttles")
	c.LeaseTTL = minDuration(get, bad, "INVITEBOT_LEASE_TTL", DefaultLeaseTTL, MinLeaseTTL, "15s", "renewed every third of it")
	c.RemindAfter = optionalDuration(get, bad, "INVITEBOT_REMIND_AFTER", DefaultRemindAfter, 0, "72h", "for no reminders")
	c.ScopedWriteWindow = optionalDuration(get, bad, "INVITEBOT_SCOPED_WRITE_WINDOW", flows.DefaultScopedWriteWindow, -1, "24h", "to not retry")
	c.BulkMaxBytes = int64(positiveInt(get, bad, "INVITEBOT_BULK_MAX_BYTES", flows.DefaultBulkMaxBytes, 64<<20))
	c.BulkMaxRows = positiveInt(get, bad, "INVITEBOT_BULK_MAX_ROWS", flows.DefaultBulkMaxRows, 100000)
	c.BulkConcurrency = positiveInt(get, bad, "INVITEBOT_BULK_CONCURRENCY", flows.DefaultBulkConcurrency, 150)
	c.checkInviteAs(bad)
	if err := c.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		bad("LOG_LEVEL", "one of debug, info, warn, error")
	}
	if c.LogFormat != "" && c.LogFormat != "json" && c.LogFormat != "text" {
		bad("LOG_FORMAT", "json or text")
	}
	c.Policy = &Policy{}
	if c.PolicyPath != "" && mode != modeStore {
		p, err := LoadPolicy(c.PolicyPath)
		if err != nil {
			errs = append(errs, fmt.Errorf("INVITEBOT_CONFIG: %w", err))
		} else {
			c.Policy = p
		}
	}
	if mode == modeStore {
		// Only the problems of what the store needs.
		errs = slices.DeleteFunc(errs, func(err error) bool {
			k := err.Error()
			return !strings.HasPrefix(k, "INVITEBOT_DB") && !(c.DBAzureAuth && strings.HasPrefix(k, "AZURE_"))
		})
	}
	// One line per problem, sorted: each starts with its variable.
	slices.SortStableFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// checkURL checks an absolute URL; https is required unless the host is a
// loopback address (the emulators) and allowHTTP is set.
func checkURL(bad func(string, string, ...any), k, v string, allowLoopbackHTTP bool) {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		bad(k, "not an absolute URL: %q", v)
		return
	}
	loopback := u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1" || u.Hostname() == "::1"
	if u.Scheme != "https" && !(u.Scheme == "http" && loopback && allowLoopbackHTTP) {
		bad(k, "must be an https:// URL")
	}
}

// lower lower-cases object IDs (GUIDs compare case-insensitively).
func lower(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strings.ToLower(id)
	}
	return out
}

// positiveInt reads a whole number from 1 to most, or def when unset.
// optionalDuration reads a duration of at least a minute from name:
// unset is def, "0" is off (what the caller uses for off), anything else
// malformed or shorter is reported with bad.
// minDuration reads the duration variable name: def when unset, at least
// least (why says why; example shows the form).
func minDuration(get func(string, string) string, bad func(string, string, ...any), name string, def, least time.Duration, example, why string) time.Duration {
	v := get(name, "")
	if v == "" {
		return def
	}
	d, err := ParseDuration(v)
	switch {
	case err != nil:
		bad(name, "not a duration like %s: %q", example, v)
	case d < least:
		bad(name, "at least %s (%s)", least, why)
	default:
		return d
	}
	return def
}

func optionalDuration(get func(string, string) string, bad func(string, string, ...any), name string, def, off time.Duration, example, zero string) time.Duration {
	v := get(name, "")
	if v == "" {
		return def
	}
	d, err := ParseDuration(v)
	switch {
	case v == "0":
		return off
	case err != nil:
		bad(name, "not a duration like %s (or 0 %s): %q", example, zero, v)
	case d < time.Minute:
		bad(name, "at least 1m, or 0 %s", zero)
	default:
		return d
	}
	return def
}

func positiveInt(get func(string, string) string, bad func(string, string, ...any), name string, def, most int) int {
	v := get(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		bad(name, "a whole number from 1 to %d: %q", most, v)
		return def
	}
	return n
}

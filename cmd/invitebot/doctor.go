package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/graph"
	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/store"
)

// requiredRoles are the Graph application permissions invitebot needs
// (each line: any one of them); group adds and the optional writes may
// come from directory roles instead (checkWrites). optionalRoles are
// needed by some features only.
var (
	requiredRoles = [][]string{{"User.Invite.All"}, {"User.Read.All"}, {"Domain.Read.All", "Organization.Read.All"}}
	optionalRoles = map[string]string{"User.ReadWrite.All": "the optional attributes, sponsors, Delete the guest and expiry with action: disable"}
)

// doctor runs the checks and writes a line for each; it returns an error
// if any failed.
type doctor struct {
	out    io.Writer
	failed int
}

func (d *doctor) ok(name, format string, a ...any) {
	fmt.Fprintf(d.out, "ok    %-20s %s\n", name, fmt.Sprintf(format, a...))
}

func (d *doctor) warn(name, format string, a ...any) {
	fmt.Fprintf(d.out, "warn  %-20s %s\n", name, fmt.Sprintf(format, a...))
}

func (d *doctor) fail(name, format string, a ...any) {
	d.failed++
	fmt.Fprintf(d.out, "FAIL  %-20s %s\n", name, fmt.Sprintf(format, a...))
}

// doctorCmd is `invitebot doctor`.
func doctorCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: invitebot doctor

Checks the configuration against Slack and Microsoft Entra, a line each:
the environment, the Slack token and its scopes, the Entra credential and
the Graph permissions its token carries, the tenant's verified domains,
the policy file's groups, and the bbolt file. Exits non-zero if any check
fails. It changes nothing.
`)
	}
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	return runDoctor(ctx, getenv, deps{}, stdout)
}

func runDoctor(ctx context.Context, getenv func(string) string, d deps, stdout io.Writer) error {
	doc := &doctor{out: stdout}
	cfg, err := config.Load(getenv)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			doc.fail("environment", "%s", line)
		}
		return fmt.Errorf("doctor: %d check(s) failed", doc.failed)
	}
	mode := "HTTP mode"
	if cfg.SocketMode() {
		mode = "Socket Mode"
	}
	doc.ok("environment", "complete (%s; policy file: %s)", mode, orDefault(cfg.PolicyPath, "none"))
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	doctorSignIn(ctx, doc, cfg, d.authHTTP)

	// Slack.
	opts := []slack.Option{slack.OptionAPIURL(cfg.SlackAPIURL)}
	if d.slackHTTP != nil {
		opts = append(opts, slack.OptionHTTPClient(d.slackHTTP))
	}
	api := slack.New(cfg.SlackBotToken.Reveal(), opts...)
	if at, err := api.AuthTestContext(ctx); err != nil {
		doc.fail("slack token", "auth.test: %v", err)
	} else {
		doc.ok("slack token", "workspace %s (%s), bot user %s", at.Team, at.TeamID, at.UserID)
		granted := strings.Split(strings.ReplaceAll(at.Header.Get("X-OAuth-Scopes"), " ", ""), ",")
		var missing []string
		for _, s := range bot.Scopes {
			if !slices.Contains(granted, s) {
				missing = append(missing, s)
			}
		}
		if len(missing) > 0 {
			doc.fail("slack scopes", "missing %s: add them in the app's OAuth & Permissions (or re-create it from manifest/manifest.yaml) and reinstall", strings.Join(missing, ", "))
		} else {
			doc.ok("slack scopes", "all %d the manifest asks for", len(bot.Scopes))
		}
	}

	// Entra.
	gc := entraConfig(cfg, d)
	gc.Transport, gc.Logger = d.graphTransport, slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, err := graph.New(gc)
	if err != nil {
		doc.fail("entra credential", "%s: %v", cfg.CredentialKind(), err)
	} else if tok, err := dir.Token(ctx); err != nil {
		doc.fail("entra credential", "%s: no token: %s", cfg.CredentialKind(), graph.TokenErrorSummary(err))
	} else {
		doc.ok("entra credential", "token acquired for tenant %s with the %s", cfg.TenantID, cfg.CredentialKind())
		claims, err := readClaims(tok)
		switch {
		case err != nil:
			doc.fail("graph permissions", "cannot read the token's roles: %v", err)
		default:
			var missing, have []string
			for _, alts := range requiredRoles {
				if i := slices.IndexFunc(alts, func(r string) bool { return claims.has(r) }); i >= 0 {
					have = append(have, alts[i])
				} else {
					missing = append(missing, strings.Join(alts, " (or ")+strings.Repeat(")", len(alts)-1))
				}
			}
			for _, r := range []string{"GroupMember.ReadWrite.All", "User.ReadWrite.All", "RoleManagement.Read.Directory", "GroupMember.Read.All"} {
				if claims.has(r) {
					have = append(have, r)
				}
			}
			if len(missing) > 0 {
				doc.fail("graph permissions", "missing application permission(s) %s: add them under API permissions and grant admin consent", strings.Join(missing, ", "))
			} else {
				doc.ok("graph permissions", "%s", strings.Join(have, ", "))
			}
			checkWrites(ctx, doc, claims, dir)
		}
		if domains, err := dir.VerifiedDomains(ctx); err != nil {
			doc.fail("verified domains", "%v", err)
		} else {
			doc.ok("verified domains", "%s", strings.Join(domains, ", "))
		}
		for _, g := range cfg.Policy.Groups {
			eg, err := dir.Group(ctx, g.ID)
			switch {
			case errors.Is(err, flows.ErrForbidden):
				doc.warn("policy group", "%s (%s): not verified: Graph refused to read it (403); grant GroupMember.Read.All (or the Directory Readers role), "+
					"or, with a role scoped to an administrative unit, check that the unit holds this group", g.Name, g.ID)
			case err != nil:
				doc.fail("policy group", "%s (%s): %v", g.Name, g.ID, err)
			case eg.MembersRefusal() != "":
				doc.fail("policy group", "%s (%s) is %q in Entra, but %s", g.Name, g.ID, eg.DisplayName, eg.MembersRefusal())
			case eg.IsAssignableToRole:
				doc.warn("policy group", "%s (%s) is %q in Entra, a role-assignable group: adding members also needs RoleManagement.ReadWrite.Directory", g.Name, g.ID, eg.DisplayName)
			default:
				doc.ok("policy group", "%s (%s) is %q in Entra; members can be added", g.Name, g.ID, eg.DisplayName)
			}
		}
	}

	// The store.
	if cfg.Postgres() {
		doctorPostgres(ctx, doc, cfg, dir)
	} else {
		doctorBolt(doc, cfg)
	}
	if doc.failed > 0 {
		return fmt.Errorf("doctor: %d check(s) failed", doc.failed)
	}
	return nil
}

// doctorBolt checks the bbolt file (read-only: see checkStore).
func doctorBolt(doc *doctor, cfg *config.Config) { doc.checkStore(cfg.DBPath) }

// doctorPostgres checks the PostgreSQL database: it connects (with an
// Entra token when INVITEBOT_DB_AZURE_AUTH is set), its schema is at this
// invitebot's version (Open migrates it), and who runs the background work.
func doctorPostgres(ctx context.Context, doc *doctor, cfg *config.Config, dir *graph.Client) {
	name := config.RedactDB(cfg.DBPath)
	if cfg.DBAzureAuth && dir == nil {
		doc.fail("store", "%s: INVITEBOT_DB_AZURE_AUTH needs the Entra credential, which failed above", name)
		return
	}
	so := storeOptions{azureAuth: cfg.DBAzureAuth, entra: func() (tokenFunc, error) { return dir.TokenFor, nil }}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := openStore(ctx, cfg.DBPath, so)
	if err != nil {
		doc.fail("store", "%v", err)
		return
	}
	defer b.Close()
	db := b.(*pgstore.DB)
	st, err := db.Stats(ctx)
	if err != nil {
		doc.fail("store", "%s: %v", name, err)
		return
	}
	doc.ok("store", "%s: PostgreSQL, schema version %d, %d invitations, %d guests, %d audit events",
		name, db.Version(), st.Invitations, st.Guests, st.AuditEntries)
	l, held, err := db.Lease(ctx, flows.LeaseBackground)
	switch {
	case err != nil:
		doc.fail("lease", "%v", err)
	case !held:
		doc.ok("lease", "background work: no replica holds the lease (none running, or taking over)")
	default:
		doc.ok("lease", "background work: %s holds the lease (epoch %d) until %s", l.Holder, l.Epoch, l.Expires.UTC().Format(time.RFC3339))
	}
}

// checkStore opens the bbolt file read-only and checks it: doctor changes
// nothing, so a missing file (a wrong path, an unmounted volume) is
// reported, not created.
func (doc *doctor) checkStore(path string) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	db, err := store.Open(path, store.Options{LockTimeout: time.Second, ReadOnly: true})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		doc.warn("store", "no store at %s: a new one will be created on first start", abs)
	case errors.Is(err, store.ErrLocked):
		doc.fail("store", "%s: held by another process (a running invitebot?); doctor checked everything else", abs)
	case err != nil:
		doc.fail("store", "%v", err)
	default:
		cerr := db.Check()
		_ = db.Close()
		if cerr != nil {
			doc.fail("store", "%s is damaged: %v", abs, cerr)
		} else {
			doc.ok("store", "%s opens and checks clean", abs)
		}
	}
}

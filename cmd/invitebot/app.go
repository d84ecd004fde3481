package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"text/template"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/graph"
	"github.com/invitebot/invitebot/internal/metrics"
)

// deps are what tests and the demo replace; the zero value is production.
type deps struct {
	graphTransport http.RoundTripper      // Graph transport under the SDK middleware; nil: default
	authHTTP       *http.Client           // token transport; nil: azidentity's
	credential     azcore.TokenCredential // nil: from the config
	slackHTTP      *http.Client           // nil: http.DefaultClient
	sleep          func(context.Context, time.Duration) error
	transient      flows.Backoff
	replication    flows.Backoff
	pollInterval   time.Duration // overrides the config's (tests: -1 = no background tracking)
	missingGrace   time.Duration
	storeNoSync    bool             // benchmarks that seed thousands of records only
	now            func() time.Time // flows' clock (and the emulated tenant's and token service's); nil: time.Now
	// graphRoles are the emulated app's Graph application permissions;
	// nil: every one the simple set-up grants.
	graphRoles []string
	// env adds to or replaces the emulated set-up's environment (tests and
	// the demo: e.g. INVITEBOT_INVITE_AS=inviter).
	env map[string]string
	// userTokenLifetime is the emulated STS's delegated token lifetime
	// (short: refreshed at each use); zero: 1h.
	userTokenLifetime time.Duration
}

// app is invitebot wired together.
type app struct {
	cfg   *config.Config
	log   *slog.Logger
	db    backend
	svc   *flows.Service
	bot   *bot.Bot
	slack *slack.Client
	mux   *http.ServeMux
	// reload asks serve to re-read the policy file (serve's caller sends
	// SIGHUP here); reloaded, if set, gets each reload's outcome (tests).
	reload   chan os.Signal
	reloaded chan error
	// policy is the policy file's policy as written: Slack user group IDs
	// not yet expanded. Only serve's goroutine touches it.
	policy flows.Policy
	// groupsRefreshed, if set, gets a value after each user group
	// expansion (tests).
	groupsRefreshed chan struct{}
	// groupMembers are the user groups' members last read from Slack.
	groupMembers map[string][]string
	// ready is what GET /readyz answers.
	ready readiness
	// leader decides which replica runs the background work: the one
	// holding the store's background lease (one process on bbolt).
	leader flows.Leader
}

// newApp wires the adapters around flows. The caller must Close it.
func newApp(cfg *config.Config, log *slog.Logger, d deps) (*app, error) {
	for _, w := range cfg.Policy.Warnings {
		log.Warn("INVITEBOT_CONFIG: " + w)
	}
	tmpl, err := cfg.Policy.InvitationTemplate()
	if err != nil {
		return nil, fmt.Errorf("INVITEBOT_CONFIG: templates.invitation: %w", err)
	}
	m := metrics.New()
	bi := readBuildInfo()
	m.BuildInfo(bi.Version, bi.Revision, bi.GoVersion)
	gc := entraConfig(cfg, d)
	gc.Transport, gc.Logger = m.Graph(d.graphTransport), log.With("component", "graph")
	dir, err := graph.New(gc)
	if err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	so := storeOptions{noSync: d.storeNoSync, azureAuth: cfg.DBAzureAuth,
		entra: func() (tokenFunc, error) { return dir.TokenFor, nil }}
	openCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	db, err := openStore(openCtx, cfg.DBPath, so)
	cancel()
	if err != nil {
		return nil, err
	}
	slackHTTP := &http.Client{}
	if d.slackHTTP != nil {
		c := *d.slackHTTP
		slackHTTP = &c
	}
	// Every Slack call goes through the pacer (rate limits, Retry-After),
	// then the metrics (each HTTP request counted, resends included).
	slackHTTP.Transport = bot.NewPacer(m.Slack(slackHTTP.Transport, cfg.SlackAPIURL), cfg.SlackAPIURL, m)
	opts := []slack.Option{slack.OptionAPIURL(cfg.SlackAPIURL), slack.OptionHTTPClient(slackHTTP)}
	if cfg.SocketMode() {
		opts = append(opts, slack.OptionAppLevelToken(cfg.SlackAppToken.Reveal()))
	}
	api := slack.New(cfg.SlackBotToken.Reveal(), opts...)
	var (
		b   *bot.Bot
		svc *flows.Service
	)
	si, err := newSignIn(cfg, log, d, db, &svc, &b)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	var (
		signIn bot.SignIn
		deleg  flows.Delegation
	)
	if si != nil {
		signIn, deleg = si, delegation{signIn: si, dir: dir}
	}
	b = bot.New(bot.Config{
		Client: api, SigningSecret: cfg.SlackSigningSecret.Reveal(),
		InvitationTemplate: tmpl, Logger: log.With("component", "bot"),
		BulkLimits:      flows.BulkLimits{MaxBytes: cfg.BulkMaxBytes, MaxRows: cfg.BulkMaxRows},
		BulkConcurrency: cfg.BulkConcurrency, SignIn: signIn,
		WorkflowClient: func(token string) *slack.Client { // the workflow step's completion
			return slack.New(token, slack.OptionAPIURL(cfg.SlackAPIURL), slack.OptionHTTPClient(slackHTTP))
		},
	})
	// Replicas sharing a store name themselves in it: the background lease
	// and which replica runs an invitation's work (flows/replica.go).
	holder, replica := leaseHolder(cfg.DBPath), ""
	if _, shared := any(db).(flows.Leaser); shared && config.IsPostgresURL(cfg.DBPath) {
		replica = holder
	}
	svc = flows.New(flows.Config{
		Directory: dir, Store: db, Notifier: b, People: b, Policy: cfg.FlowsPolicy(), Observer: m,
		Logger: log.With("component", "flows"), Sleep: d.sleep, Now: d.now,
		Transient: d.transient, Replication: d.replication,
		PollInterval: cmp.Or(d.pollInterval, cfg.PollInterval), RemindAfter: cfg.RemindAfter,
		MissingGrace: d.missingGrace, ScopedWriteWindow: cfg.ScopedWriteWindow,
		InviteAs: flows.InviteAs(cfg.InviteAs), Delegation: deleg,
		Replica: replica, ReplicaTTL: cfg.LeaseTTL,
	})
	b.SetService(svc)
	a := &app{cfg: cfg, log: log, db: db, svc: svc, bot: b, slack: api, mux: http.NewServeMux(), reload: make(chan os.Signal, 1),
		policy: cfg.FlowsPolicy()}
	a.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	})
	a.ready.ping = func(ctx context.Context) error { // the ID is never stored
		_, err := db.Invitation(ctx, "readyz-probe")
		return err
	}
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.mux.Handle("GET /metrics", m.Handler())
	var leaser flows.Leaser = &flows.LocalLeaser{} // one process
	if l, ok := any(db).(flows.Leaser); ok {
		leaser = l
	}
	a.leader = flows.Leader{Leaser: leaser, Holder: holder, TTL: cfg.LeaseTTL,
		Logger: log.With("component", "leader")}
	if si != nil { // in both modes: the inviters' browsers come here, not Slack
		a.mux.Handle("GET /auth/", si.Handler())
		log.Info("inviters sign in to send invitations as themselves", "invite_as", cfg.InviteAs, "redirect_uri", si.RedirectURI())
	}
	if !cfg.SocketMode() {
		a.mux.Handle("/slack/", b.Handler())
	}
	return a, nil
}

// Close stops background work and closes the store: the invitations in
// flight are checkpointed, then bulk runs report what they finished (the
// rest is interrupted, for the next run of the file).
func (a *app) Close() error {
	a.svc.Close()
	a.bot.Close()
	return a.db.Close()
}

// serve runs the bot until ctx is done: it serves HTTP (health, metrics,
// and Slack in HTTP mode) on ln, in Socket Mode connects to Slack, and meanwhile
// reads the tenant's domains and, while this replica holds the background
// lease, runs the background work (resuming unfinished invitations first). Slack is
// served at once: a slow or unreachable Graph at start-up must not make
// slash commands time out (validation re-checks the domains before
// inviting). On shutdown it stops accepting, lets requests finish, and
// leaves unfinished invitations recorded for the next start.
func (a *app) serve(ctx context.Context, ln net.Listener) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	mode := "http"
	if a.cfg.SocketMode() {
		mode = "socket"
	}
	bi := readBuildInfo()
	a.log.Info("invitebot serving", "addr", ln.Addr().String(), "mode", mode, "db", config.RedactDB(a.cfg.DBPath),
		"version", bi.Version, "revision", bi.Revision, "modified", bi.Modified, "go", bi.GoVersion)
	srv := &http.Server{Handler: a.mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 3)
	go func() { errc <- srv.Serve(ln) }()
	if a.cfg.SocketMode() {
		go func() { errc <- a.bot.RunSocketMode(ctx, socketmode.New(a.slack)) }()
	}
	backups := make(chan struct{}) // invitebot backup, while serve holds the store
	go func() {
		defer close(backups)
		if c, ok := any(a.db).(storeCopier); ok {
			serveBackups(ctx, c, a.cfg.DBPath, a.log)
		}
	}()
	identified := make(chan struct{})
	// Until the identity is read, requests are not checked against the
	// workspace and app; say what still checks them.
	unidentified := "read the Slack identity; until it is read, requests are checked by their signature only, not for their workspace and app"
	if a.cfg.SocketMode() {
		unidentified = "read the Slack identity; until it is read, requests are taken from the WebSocket that the app-level token opened (Socket Mode has no signatures) without checking their workspace and app"
	}
	identity := a.ready.expect("Slack identity (auth.test)")
	go func() { // which workspace and app requests must be for
		defer close(identified)
		defer identity() // tried once: requests are checked by signature meanwhile
		for wait := time.Second; ctx.Err() == nil; wait = min(2*wait, time.Minute) {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := a.bot.Identify(cctx)
			cancel()
			if err == nil {
				return
			}
			a.log.Warn(unidentified, "err", err, "retry_in", wait)
			identity()
			if flows.SleepContext(ctx, wait) != nil {
				return
			}
		}
	}()
	// Every replica reads the tenant's domains; the background work runs
	// on the one replica holding the lease (this one, on bbolt).
	led := make(chan struct{})
	domains := a.ready.expect("verified domains")
	go func() {
		defer close(led)
		a.svc.StartReplica(ctx)
		domains()
		_ = a.leader.Run(ctx, a.svc.Background)
	}()
	var err error
	// Each replica expands the policy's Slack user groups for itself: now,
	// then every 10 minutes.
	groups := time.NewTimer(0)
	defer groups.Stop()
	groupsRead := a.ready.expect("Slack user groups")
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-groups.C:
			a.expandUserGroups(ctx)
			groupsRead()
			groups.Reset(userGroupRefresh)
		case <-a.reload:
			rerr := a.reloadPolicy(ctx)
			if a.reloaded != nil {
				a.reloaded <- rerr
			}
		case err = <-errc:
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			break wait
		}
	}
	a.ready.stop()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	// Every run (this replica's, and the background work's) stops before
	// its next step; the calls in flight finish within flows'
	// StopGrace, together, and are recorded.
	a.svc.Stop()
	a.log.Info("stopping: invitations in progress stop after their current step")
	stop()
	<-led // the background work stopped and the lease is released; Close must not race it
	<-identified
	<-backups
	a.log.Info("invitebot stopped")
	return err
}

// reloadPolicy re-reads INVITEBOT_CONFIG and puts it in force. A file with
// errors is refused (logged, and returned) and the policy in force stays;
// invitations in flight keep going.
func (a *app) reloadPolicy(ctx context.Context) error {
	path := a.cfg.PolicyPath
	if path == "" {
		a.log.Warn("policy reload asked for, but INVITEBOT_CONFIG is not set")
		return errors.New("INVITEBOT_CONFIG is not set")
	}
	p, err := config.LoadPolicy(path)
	var tmpl *template.Template
	if err == nil {
		tmpl, err = p.InvitationTemplate()
	}
	if err != nil {
		a.log.Error("policy reload refused; the policy in force stays", "file", path, "err", err)
		return err
	}
	for _, w := range p.Warnings {
		a.log.Warn("INVITEBOT_CONFIG: " + w)
	}
	a.bot.SetTemplate(tmpl)
	a.policy = p.Flows(a.cfg.RedirectURL)
	a.expandUserGroups(ctx) // puts it in force, its user groups expanded
	a.log.Info("policy reloaded", "file", path, "admins", len(p.Admins), "groups", len(p.Groups), "domain_rules", len(p.Domains.Rules))
	return nil
}

// userGroupRefresh is how often the policy's Slack user groups are re-read.
const userGroupRefresh = 10 * time.Minute

// expandUserGroups puts the policy in force with its Slack user groups
// replaced by their members. A group Slack will not list is logged and
// grants nothing (it matches nobody) until the next refresh.
func (a *app) expandUserGroups(ctx context.Context) {
	ids := a.policy.UserGroups()
	if a.groupMembers == nil {
		a.groupMembers = map[string][]string{}
	}
	for _, id := range ids {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := a.bot.UserGroupMembers(cctx, id)
		cancel()
		if err != nil {
			// The last members read stay in force; a group never read
			// grants nothing.
			a.log.Warn("read Slack user group", "group", id, "known", a.groupMembers[id] != nil, "err", err)
			continue
		}
		a.groupMembers[id] = m
	}
	a.svc.SetPolicy(a.policy.ExpandUserGroups(a.groupMembers))
	a.log.Debug("policy user groups expanded", "groups", len(ids), "read", len(a.groupMembers))
	if a.groupsRefreshed != nil {
		a.groupsRefreshed <- struct{}{}
	}
}

// newLogger builds the process logger: JSON unless LOG_FORMAT=text or
// stderr is a terminal. Lines logged with a context add the Slack request's
// ID and the invitation's ID it carries (bot.LogHandler).
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(bot.LogHandler(slog.NewTextHandler(w, opts)))
	}
	return slog.New(bot.LogHandler(slog.NewJSONHandler(w, opts)))
}

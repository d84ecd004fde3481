// Package bot is invitebot's Slack adapter: HTTP and Socket Mode ingress,
// request verification, payload parsing and Block Kit rendering. It holds no
// business rules: it turns Slack payloads into calls on *flows.Service and
// flows' notices into Slack messages and views. It implements
// flows.Notifier.
package bot

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// MaxBodyBytes bounds a request body from Slack. Interaction payloads carry
// the whole view; 1 MiB is far above what the invitation dialogs produce.
const MaxBodyBytes = 1 << 20

// Config configures a Bot.
type Config struct {
	Client        *slack.Client
	Service       *flows.Service // set with SetService when the service needs the Bot as its Notifier
	SigningSecret string         // HTTP mode; "" rejects every /slack/* request
	// InvitationTemplate renders the ready-to-forward invitation text.
	InvitationTemplate *template.Template
	Logger             *slog.Logger
	// BulkLimits bound a CSV file shared for bulk invitations; zero: flows'
	// defaults. BulkConcurrency is how many of its rows run at once; zero:
	// flows.DefaultBulkConcurrency.
	BulkLimits      flows.BulkLimits
	BulkConcurrency int
	// SignIn connects inviters' Microsoft accounts; nil: invitations are
	// sent as the app and there is nothing to connect.
	SignIn SignIn
	// WorkflowClient returns a client that calls Slack with a workflow
	// step's workflow token (functions.completeSuccess/completeError), with
	// Client's API URL and HTTP client; nil: slack.com's API.
	WorkflowClient func(token string) *slack.Client
}

// Bot handles Slack requests and notifies inviters.
type Bot struct {
	api    *slack.Client
	svc    *flows.Service
	secret string
	tmpl   atomic.Pointer[template.Template]
	id     atomic.Pointer[identity]
	log    *slog.Logger

	// Bulk runs started from shared files, on jobsCtx (Close ends them).
	bulkLimits      flows.BulkLimits
	bulkConcurrency int
	jobsCtx         context.Context
	jobsStop        context.CancelFunc
	jobs            sync.WaitGroup
	bulkMu          sync.Mutex
	bulkFiles       map[string]bool // file IDs being run

	profiles ttlCache[profile]     // Slack user ID → profile (users.info)
	invitees ttlCache[*slack.User] // lower-cased email → Slack user or nil (users.lookupByEmail)
	dialogs  progress              // coalesced progress of the invitation dialogs
	homes    homes                 // when each Home tab was published
	dmLocks  [64]sync.Mutex        // see dmLock
	// progressEvery and homeEvery are the constants of the same names
	// (tests shorten them).
	progressEvery, homeEvery time.Duration

	signIn SignIn

	workflowClient func(token string) *slack.Client
}

var _ flows.Notifier = (*Bot)(nil)

// New returns a Bot.
func New(cfg Config) *Bot {
	b := &Bot{api: cfg.Client, svc: cfg.Service, secret: cfg.SigningSecret, log: cfg.Logger,
		bulkConcurrency: cfg.BulkConcurrency, signIn: cfg.SignIn, workflowClient: cfg.WorkflowClient}
	if b.workflowClient == nil {
		b.workflowClient = func(token string) *slack.Client { return slack.New(token) }
	}
	b.bulkLimits = flows.BulkLimits{MaxBytes: cmp.Or(cfg.BulkLimits.MaxBytes, flows.DefaultBulkMaxBytes),
		MaxRows: cmp.Or(cfg.BulkLimits.MaxRows, flows.DefaultBulkMaxRows)}
	b.jobsCtx, b.jobsStop = context.WithCancel(context.Background())
	b.profiles.ttl, b.invitees.ttl = profileTTL, inviteeTTL
	b.progressEvery, b.homeEvery = progressEvery, homeEvery
	b.tmpl.Store(cfg.InvitationTemplate)
	if b.log == nil {
		b.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return b
}

// SetTemplate replaces the invitation text template (policy reload).
func (b *Bot) SetTemplate(t *template.Template) { b.tmpl.Store(t) }

// SetService sets the service; call it once, before serving.
func (b *Bot) SetService(s *flows.Service) { b.svc = s }

// Handler returns the HTTP mode endpoints: POST /slack/commands,
// /slack/interactions and /slack/events. Every request is verified (HMAC
// v0, 5-minute window) before anything else; a bad or stale signature gets
// 401 and causes no side effect. Each request gets an ID for the log (see
// LogHandler).
func (b *Bot) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /slack/commands", b.verified(b.serveCommand))
	mux.Handle("POST /slack/interactions", b.verified(b.serveInteraction))
	mux.Handle("POST /slack/events", b.verified(b.serveEvent))
	return b.identified(mux)
}

// verified checks the request's Slack signature over its raw body and
// hands the handler a request whose body can be read again.
func (b *Bot) verified(next func(http.ResponseWriter, *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		sv, err := slack.NewSecretsVerifier(r.Header, b.secret)
		if err == nil {
			_, _ = sv.Write(body)
			err = sv.Ensure()
		}
		if err != nil {
			b.log.WarnContext(r.Context(), "rejected unsigned or stale Slack request", "path", r.URL.Path, "err", err)
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next(w, r)
	})
}

func (b *Bot) serveCommand(w http.ResponseWriter, r *http.Request) {
	cmd, err := slack.SlashCommandParse(r)
	if err != nil {
		http.Error(w, "bad slash command", http.StatusBadRequest)
		return
	}
	writeJSON(w, b.command(r.Context(), cmd))
}

func (b *Bot) serveInteraction(w http.ResponseWriter, r *http.Request) {
	var cb slack.InteractionCallback
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	if err := json.Unmarshal([]byte(r.PostForm.Get("payload")), &cb); err != nil {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	writeJSON(w, b.interaction(r.Context(), cb))
}

func (b *Bot) serveEvent(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var ev struct {
		Type      string `json:"type"`
		Challenge string `json:"challenge"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "bad event", http.StatusBadRequest)
		return
	}
	if ev.Type == "url_verification" {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, ev.Challenge)
		return
	}
	if err := b.event(r.Context(), body); err != nil {
		http.Error(w, "not recorded; send it again", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// writeJSON answers 200 with v as JSON, or an empty body when v is nil
// (Slack reads an empty 200 as "accepted").
func writeJSON(w http.ResponseWriter, v any) {
	if v == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ephemeral is a slash command response only the user sees.
func ephemeral(text string) *slack.Msg {
	return &slack.Msg{ResponseType: slack.ResponseTypeEphemeral, Text: text}
}

// goJob runs fn in the background, unless the bot is closing. fn's context
// keeps ctx's values (request and invitation IDs for the log) but not its
// deadline, and is cancelled by Close, which waits for fn.
func (b *Bot) goJob(ctx context.Context, fn func(context.Context)) {
	b.bulkMu.Lock()
	if b.jobsCtx.Err() != nil {
		b.bulkMu.Unlock()
		return
	}
	b.jobs.Add(1)
	b.bulkMu.Unlock()
	go func() {
		defer b.jobs.Done()
		jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		defer cancel()
		defer context.AfterFunc(b.jobsCtx, cancel)()
		fn(jctx)
	}()
}

// detach returns a context for work that must outlive the Slack request
// (e.g. a views.open that Slack is waiting for) but keep its values.
func detach(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

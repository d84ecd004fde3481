//go:build !noemulators

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// Emulated identities: fixed so the demo's output reads well.
const (
	emuTenant   = "9188040d-6c67-4c5b-b112-36a304b66dad"
	emuClient   = "22222222-2222-2222-2222-222222222222"
	emuSecret   = "emulated-client-secret"
	emuSigning  = "emulated-signing-secret"
	emuAppToken = "xapp-1-emulated"
	emuTeam     = "T0CONTOSO"
	emuAdmin    = "U0ADMIN"
	emuPortal   = "11111111-2222-3333-4444-555555555555"
)

// emulated is invitebot serving against the built-in emulators: the Entra
// tenant and its token service, and the Slack Web API (and, in Socket Mode,
// Slack's Socket Mode endpoint).
type emulated struct {
	tenant *graphfake.Tenant
	sts    *graphfake.STS
	graph  *graphfake.Server
	slack  *slackfake.Server
	app    *app
	player *slackfake.Player
	cancel context.CancelFunc
	done   chan error

	cfg  *config.Config
	log  *slog.Logger
	deps deps
	addr string // where invitebot listens, kept across restarts
}

// emuTokenKey is the emulated set-up's INVITEBOT_TOKEN_KEY.
const emuTokenKey = "ZW11bGF0ZWQtdG9rZW4ta2V5LTMyLWJ5dGVzLWxvbmc="

// transport is how Slack reaches invitebot.
type transport int

const (
	overHTTP   transport = iota // signed requests to /slack/*
	overSocket                  // Socket Mode: SLACK_APP_TOKEN set
)

// startEmulated configures invitebot through the same environment variables
// as `serve` and runs it on a loopback port.
func startEmulated(dbPath string, log *slog.Logger, d deps, tr transport) (*emulated, error) {
	e := &emulated{addr: "127.0.0.1:0"}
	stsCfg := graphfake.STSConfig{TenantID: emuTenant, ClientID: emuClient, ClientSecret: emuSecret, Roles: d.graphRoles,
		UserTokenLifetime: d.userTokenLifetime, Now: d.now}
	if as := d.env["INVITEBOT_INVITE_AS"]; as != "" && as != config.InviteAsApp {
		// The inviters' browsers come back to invitebot: fix its address
		// (the redirect URI) before it starts, for every restart.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		e.addr = ln.Addr().String()
		_ = ln.Close()
		stsCfg.RedirectURIs = []string{"http://" + e.addr + "/auth/callback"}
	}
	e.sts = graphfake.NewSTS(stsCfg)
	e.tenant = graphfake.NewTenant(graphfake.TenantConfig{ID: emuTenant, VerifiedDomains: []string{"contoso.com"}, ValidToken: e.sts.ValidToken, Now: d.now})
	e.sts.SetWids(e.tenant.TenantWideRoles)
	e.tenant.AddGroupWithID(emuPortal, "Partner portal users")
	e.graph = graphfake.NewServer(e.tenant)
	e.slack = slackfake.New()
	e.slack.SetScopes(bot.Scopes...)
	if err := defineSteps(e.slack); err != nil {
		e.Close()
		return nil, err
	}
	env := map[string]string{
		"SLACK_BOT_TOKEN": "xoxb-emulated", "SLACK_SIGNING_SECRET": emuSigning, "SLACK_API_URL": e.slack.APIURL(),
		"AZURE_TENANT_ID": emuTenant, "AZURE_CLIENT_ID": emuClient, "AZURE_CLIENT_SECRET": emuSecret,
		"AZURE_AUTHORITY_HOST": e.sts.URL, "GRAPH_BASE_URL": e.graph.URL, "INVITEBOT_DB": dbPath,
	}
	if tr == overSocket {
		env["SLACK_APP_TOKEN"] = emuAppToken
	}
	if e.addr != "127.0.0.1:0" {
		env["INVITEBOT_PUBLIC_URL"], env["INVITEBOT_TOKEN_KEY"] = "http://"+e.addr, emuTokenKey
	}
	for k, v := range d.env {
		env[k] = v
	}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		e.Close()
		return nil, err
	}
	cfg.Policy.Admins = []string{emuAdmin}
	cfg.Policy.Groups = []config.Group{{Name: "Partner portal users", ID: emuPortal}}
	d.authHTTP = e.sts.Client()
	e.cfg, e.log, e.deps = cfg, log, d
	e.player = &slackfake.Player{Secret: emuSigning, Team: emuTeam, Slack: e.slack, Socket: tr == overSocket,
		Client: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}
	if err := e.startApp(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// startApp starts invitebot on the emulators and its store; in Socket Mode
// it returns once invitebot has connected to the Slack fake.
func (e *emulated) startApp() error {
	connects := e.slack.Connections()
	a, err := newApp(e.cfg, e.log, e.deps)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		a.Close()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.app, e.cancel, e.done = a, cancel, make(chan error, 1)
	go func() { e.done <- a.serve(ctx, ln) }()
	e.player.BotURL = "http://" + ln.Addr().String()
	if !e.cfg.SocketMode() {
		return nil
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := e.slack.WaitConnected(wctx, connects+1); err != nil {
		_ = e.stopApp()
		return fmt.Errorf("invitebot did not connect over Socket Mode: %w", err)
	}
	return nil
}

// stopApp stops invitebot as a shutdown or crash would: in-flight steps
// are abandoned where they are, and the store keeps their state.
func (e *emulated) stopApp() error {
	// Slack's spare keep-alive connections would hold up the graceful
	// shutdown for 5 s (net/http treats never-used connections as busy).
	e.player.Client.CloseIdleConnections()
	e.cancel()
	err := <-e.done
	err = errors.Join(err, e.app.Close())
	e.app, e.cancel = nil, nil
	return err
}

// Close stops invitebot (its store keeps unfinished work) and the emulators.
func (e *emulated) Close() error {
	var err error
	if e.app != nil {
		err = e.stopApp()
	}
	if e.graph != nil {
		e.graph.Close()
	}
	if e.sts != nil {
		e.sts.Close()
	}
	if e.slack != nil {
		e.slack.Close()
	}
	return err
}

// inviteValues is a filled-in invitation dialog.
func inviteValues(email, name, delivery string, groups ...string) map[string]map[string]any {
	v := map[string]map[string]any{
		"email":        {"email": slackfake.Text(email)},
		"display_name": {"display_name": slackfake.Text(name)},
		"redirect_url": {"redirect_url": slackfake.Text("https://myapplications.microsoft.com")},
		"delivery":     {"delivery": slackfake.Radio(delivery)},
	}
	if len(groups) > 0 {
		v["groups"] = map[string]any{"groups": slackfake.Multi(groups...)}
	}
	return v
}

// dmsTo returns the messages posted to a user's DM with the bot.
func (e *emulated) dmsTo(user string) []slackfake.Message { return dmsIn(e.slack, user) }

// dmsIn returns the messages posted to a user's DM with the bot on s
// (latest versions).
func dmsIn(s *slackfake.Server, user string) []slackfake.Message {
	var out []slackfake.Message
	for _, m := range s.Messages() {
		if m.Channel == slackfake.DMChannel(user) && !m.Ephemeral {
			out = append(out, m)
		}
	}
	return out
}

// viewCallback returns a view's callback_id.
func (e *emulated) viewCallback(id string) string {
	raw, _ := e.slack.View(id)
	var v struct {
		CallbackID string `json:"callback_id"`
	}
	_ = json.Unmarshal(raw, &v)
	return v.CallbackID
}

var ticketRE = regexp.MustCompile(`(?i)ticket(%3d|%253d|=)[0-9a-f]+`)

// render turns Block Kit JSON into the text a person would read. Redeem
// link tickets are masked: the demo prints, and links are secrets.
func render(blocks json.RawMessage) string {
	var bs []struct {
		Type string `json:"type"`
		Text struct {
			Text string `json:"text"`
		} `json:"text"`
		Fields []struct {
			Text string `json:"text"`
		} `json:"fields"`
		Elements []struct {
			Text json.RawMessage `json:"text"`
		} `json:"elements"`
		Label struct {
			Text string `json:"text"`
		} `json:"label"`
		Element struct {
			Options []struct {
				Text struct {
					Text string `json:"text"`
				} `json:"text"`
			} `json:"options"`
		} `json:"element"`
	}
	_ = json.Unmarshal(blocks, &bs)
	var sb strings.Builder
	for _, b := range bs {
		switch b.Type {
		case "section", "header":
			if b.Text.Text != "" {
				sb.WriteString(b.Text.Text + "\n")
			}
			for _, f := range b.Fields {
				sb.WriteString("  " + strings.ReplaceAll(f.Text, "\n", ": ") + "\n")
			}
		case "context", "actions":
			for _, el := range b.Elements {
				var t struct {
					Text string `json:"text"`
				}
				if json.Unmarshal(el.Text, &t) != nil {
					_ = json.Unmarshal(el.Text, &t.Text)
				}
				if b.Type == "actions" {
					t.Text = "[ " + t.Text + " ]"
				}
				sb.WriteString(t.Text + "\n")
			}
		case "input":
			sb.WriteString(b.Label.Text + "\n")
			for _, o := range b.Element.Options {
				sb.WriteString("  ( ) " + o.Text.Text + "\n")
			}
		}
	}
	return ticketRE.ReplaceAllString(sb.String(), "ticket=…")
}

// viewText renders a stored view.
func (e *emulated) viewText(id string) string {
	raw, _ := e.slack.View(id)
	return renderView(raw)
}

// renderView renders a view's (modal's or Home tab's) blocks.
func renderView(raw json.RawMessage) string {
	var v struct {
		Blocks json.RawMessage `json:"blocks"`
	}
	_ = json.Unmarshal(raw, &v)
	return render(v.Blocks)
}

func ok(r slackfake.Response) error {
	if r.Status != http.StatusOK {
		return fmt.Errorf("bot answered %d: %s", r.Status, r.Body)
	}
	return nil
}

package slackfake

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

const secret = "8f742231b10e8888abcd99yyyzzz85a5"

type received struct {
	Path   string
	Header http.Header
	Body   []byte
}

// fakeBot is an HTTP bot that checks Slack's signature with slack-go and
// records what it got.
type fakeBot struct {
	mu  sync.Mutex
	got []received
}

func (b *fakeBot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v, err := slack.NewSecretsVerifier(r.Header, secret)
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(io.TeeReader(r.Body, &v))
	if err := v.Ensure(); err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	b.mu.Lock()
	b.got = append(b.got, received{r.URL.Path, r.Header.Clone(), body})
	b.mu.Unlock()
}

func (b *fakeBot) last(t *testing.T) received {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.got) == 0 {
		t.Fatal("the bot got nothing")
	}
	return b.got[len(b.got)-1]
}

func httpPlayer(t *testing.T) (*Server, *Player, *fakeBot) {
	s := New()
	t.Cleanup(s.Close)
	bot := &fakeBot{}
	hs := httptest.NewServer(bot)
	t.Cleanup(hs.Close)
	return s, &Player{BotURL: hs.URL, Secret: secret, Team: "T0CONTOSO", Slack: s}, bot
}

func TestEventOverHTTP(t *testing.T) {
	s, p, bot := httpPlayer(t)
	ctx := t.Context()
	if _, err := client(s).PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U0ANN", View: homeTab(1)}); err != nil {
		t.Fatal(err)
	}
	resp, err := p.OpenHome(ctx, "U0ANN")
	if err != nil || resp.Status != http.StatusOK {
		t.Fatalf("OpenHome: %v %d %s", err, resp.Status, resp.Body)
	}
	got := bot.last(t)
	if got.Path != "/slack/events" || got.Header.Get("Content-Type") != "application/json" || got.Header.Get("X-Slack-Retry-Num") != "" {
		t.Errorf("request: %s %v", got.Path, got.Header)
	}
	ev, err := slackevents.ParseEvent(got.Body, slackevents.OptionNoVerifyToken())
	if err != nil || ev.Type != slackevents.CallbackEvent || ev.TeamID != "T0CONTOSO" || ev.APIAppID != AppID {
		t.Fatalf("ParseEvent: %v %+v", err, ev)
	}
	outer := ev.Data.(*slackevents.EventsAPICallbackEvent)
	if !strings.HasPrefix(outer.EventID, "Ev") || time.Since(time.Unix(int64(outer.EventTime), 0)) > time.Minute ||
		len(outer.Authorizations) != 1 || outer.Authorizations[0].UserID != BotUserID || !outer.Authorizations[0].IsBot {
		t.Errorf("outer event = %+v", outer)
	}
	home, ok := ev.InnerEvent.Data.(*slackevents.AppHomeOpenedEvent)
	if !ok || home.User != "U0ANN" || home.Channel != DMChannel("U0ANN") || home.Tab != "home" || home.EventTimeStamp == "" ||
		home.View == nil || home.View.ID != HomeViewID("U0ANN") {
		t.Errorf("inner event = %#v", ev.InnerEvent.Data)
	}

	// A redelivery repeats the event_id and says it is a retry.
	cb := p.EventCallback(map[string]any{"type": "app_home_opened", "user": "U0BOB", "channel": DMChannel("U0BOB"), "tab": "home"})
	for attempt := range 2 {
		if _, err := p.SendEvent(ctx, cb, attempt, "http_timeout"); err != nil {
			t.Fatal(err)
		}
	}
	got = bot.last(t)
	var body map[string]any
	if json.Unmarshal(got.Body, &body) != nil || body["event_id"] != cb["event_id"] ||
		got.Header.Get("X-Slack-Retry-Num") != "1" || got.Header.Get("X-Slack-Retry-Reason") != "http_timeout" {
		t.Errorf("retry: %v %s", got.Header, got.Body)
	}

	// A wrong signing secret is refused by slack-go's verifier.
	p.Secret = "wrong"
	if resp, err := p.OpenHome(ctx, "U0ANN"); err != nil || resp.Status != http.StatusUnauthorized {
		t.Errorf("wrong secret: %v %d", err, resp.Status)
	}
}

func TestEventOverSocketMode(t *testing.T) {
	s := New()
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p := &Player{Socket: true, Team: "T0CONTOSO", Slack: s}
	sm := socketmode.New(client(s, slack.OptionAppLevelToken("xapp-1-test")))
	go func() { _ = sm.RunContext(ctx) }()
	type delivery struct {
		req *socketmode.Request
		ev  slackevents.EventsAPIEvent
	}
	got := make(chan delivery, 4)
	go func() {
		for evt := range sm.Events {
			if evt.Type != socketmode.EventTypeEventsAPI {
				continue
			}
			got <- delivery{evt.Request, evt.Data.(slackevents.EventsAPIEvent)}
			_ = sm.AckCtx(ctx, evt.Request.EnvelopeID, nil)
		}
	}()
	if err := s.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	resp, err := p.OpenHome(ctx, "U0ANN")
	if err != nil || resp.Status != http.StatusOK || resp.Body != nil {
		t.Fatalf("OpenHome: %v %+v", err, resp)
	}
	d := <-got
	var outer map[string]any
	if err := json.Unmarshal(d.req.Payload, &outer); err != nil || outer["type"] != "event_callback" || outer["team_id"] != "T0CONTOSO" ||
		!strings.HasPrefix(outer["event_id"].(string), "Ev") || d.req.RetryAttempt != 0 || d.req.AcceptsResponsePayload {
		t.Errorf("envelope: %+v payload %s", d.req, d.req.Payload)
	}
	if home, ok := d.ev.InnerEvent.Data.(*slackevents.AppHomeOpenedEvent); !ok || home.User != "U0ANN" || home.View != nil {
		t.Errorf("inner event = %#v", d.ev.InnerEvent.Data)
	}
	cb := p.EventCallback(map[string]any{"type": "app_home_opened", "user": "U0ANN", "channel": DMChannel("U0ANN"), "tab": "messages"})
	if _, err := p.SendEvent(ctx, cb, 2, "http_error"); err != nil {
		t.Fatal(err)
	}
	if d := <-got; d.req.RetryAttempt != 2 || d.req.RetryReason != "http_error" {
		t.Errorf("retry envelope: %+v", d.req)
	}
}

// interaction parses the last block_actions payload the bot got.
func interaction(t *testing.T, bot *fakeBot) (slack.InteractionCallback, map[string]any) {
	t.Helper()
	got := bot.last(t)
	form, err := url.ParseQuery(string(got.Body))
	if got.Path != "/slack/interactions" || err != nil {
		t.Fatalf("request %s: %v", got.Path, err)
	}
	var cb slack.InteractionCallback
	var raw map[string]any
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal([]byte(form.Get("payload")), &raw)
	return cb, raw
}

func TestPress(t *testing.T) {
	s, p, bot := httpPlayer(t)
	ctx := t.Context()
	api := client(s)
	buttons := slack.NewActionBlock("acts",
		slack.NewButtonBlockElement("approve", "inv-1", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)),
		slack.NewOverflowBlockElement("more",
			slack.NewOptionBlockObject("resend", slack.NewTextBlockObject(slack.PlainTextType, "Resend", false, false), nil)))
	ch, ts, err := api.PostMessageContext(ctx, "U0ANN", slack.MsgOptionText("Approve?", false), slack.MsgOptionBlocks(buttons))
	if err != nil {
		t.Fatal(err)
	}
	dm := s.DMs("U0ANN")[0]

	// A button in a message.
	if _, err := p.Press(ctx, "U0ANN", MessageContainer(dm), "approve", "", ""); err != nil {
		t.Fatal(err)
	}
	cb, raw := interaction(t, bot)
	a := cb.ActionCallback.BlockActions
	if cb.Type != slack.InteractionTypeBlockActions || cb.User.ID != "U0ANN" || cb.User.TeamID != "T0CONTOSO" || cb.Team.ID != "T0CONTOSO" ||
		cb.APIAppID != AppID || cb.TriggerID == "" || cb.Container.Type != "message" || cb.Container.ChannelID != ch ||
		cb.Container.MessageTs != ts || cb.Channel.ID != ch || cb.Message.Timestamp != ts || cb.Message.Text != "Approve?" ||
		cb.ResponseURL == "" || len(a) != 1 || a[0].ActionID != "approve" || a[0].BlockID != "acts" || a[0].Value != "inv-1" ||
		a[0].Type != "button" || a[0].ActionTs == "" || a[0].Text.Text != "Approve" {
		t.Errorf("payload = %+v", raw)
	}
	if _, ok := raw["view"]; ok {
		t.Error("message payload carries a view")
	}
	// The trigger is a fresh, usable one.
	if _, err := api.OpenViewContext(ctx, cb.TriggerID, modal("From button")); err != nil {
		t.Errorf("trigger from Press: %v", err)
	}

	// An overflow option, after the message was edited: the payload shows
	// the current message.
	if _, _, _, err := api.UpdateMessageContext(ctx, ch, ts, slack.MsgOptionText("Approve now?", false)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Press(ctx, "U0ANN", MessageContainer(dm), "more", "resend", "acts"); err != nil {
		t.Fatal(err)
	}
	cb, _ = interaction(t, bot)
	if a := cb.ActionCallback.BlockActions; len(a) != 1 || a[0].Type != "overflow" || a[0].SelectedOption.Value != "resend" || cb.Message.Text != "Approve now?" {
		t.Errorf("overflow payload = %+v %+v", cb, a)
	}

	// Elements that are not there cannot be pressed.
	for _, c := range []struct{ action, value, block string }{{"nope", "", ""}, {"approve", "inv-2", ""}, {"approve", "", "other"}, {"more", "delete", ""}} {
		if _, err := p.Press(ctx, "U0ANN", MessageContainer(dm), c.action, c.value, c.block); err == nil {
			t.Errorf("Press%+v succeeded", c)
		}
	}
	if _, err := p.Press(ctx, "U0ANN", HomeContainer("U0ANN"), "approve", "", ""); err == nil {
		t.Error("pressed a button in an unpublished Home tab")
	}

	// A button in the Home tab carries the view, with its hash.
	home := slack.HomeTabViewRequest{Type: slack.VTHomeTab, PrivateMetadata: "pm", Blocks: slack.Blocks{BlockSet: []slack.Block{buttons}}}
	v, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U0ANN", View: home})
	if err != nil {
		t.Fatal(err)
	}
	resp, opened, err := p.PressOpen(ctx, "U0ANN", HomeContainer("U0ANN"), "approve", "inv-1", "acts")
	if err != nil || resp.Status != http.StatusOK || opened != "" {
		t.Fatal(err, resp.Status, opened)
	}
	cb, raw = interaction(t, bot)
	if cb.Container.Type != "view" || cb.Container.ViewID != v.ID || cb.View.ID != v.ID || cb.View.Hash != v.Hash ||
		cb.View.Type != slack.VTHomeTab || cb.View.PrivateMetadata != "pm" || cb.Channel.ID != "" || cb.ResponseURL != "" {
		t.Errorf("home payload = %+v", raw)
	}

	// Action sends what it is given (a forged value).
	if _, err := p.Action(ctx, "U0MALLORY", MessageContainer(dm), map[string]any{"type": "button", "action_id": "approve", "block_id": "acts", "value": "inv-9"}); err != nil {
		t.Fatal(err)
	}
	if cb, _ = interaction(t, bot); cb.User.ID != "U0MALLORY" || cb.ActionCallback.BlockActions[0].Value != "inv-9" {
		t.Errorf("forged payload = %+v", cb)
	}
}

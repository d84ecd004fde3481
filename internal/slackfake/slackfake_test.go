package slackfake

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

func client(s *Server, opts ...slack.Option) *slack.Client {
	return slack.New("xoxb-test", append([]slack.Option{slack.OptionAPIURL(s.APIURL())}, opts...)...)
}

func modal(title string) slack.ModalViewRequest {
	return slack.ModalViewRequest{Type: slack.VTModal, Title: slack.NewTextBlockObject(slack.PlainTextType, title, false, false),
		Blocks: slack.Blocks{BlockSet: []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "hi", false, false), nil, nil)}}}
}

func slackError(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func TestViewsOpen(t *testing.T) {
	s := New()
	defer s.Close()
	api := client(s)
	ctx := t.Context()

	trigger := s.NewTriggerID()
	if _, err := api.OpenViewContext(ctx, trigger, modal(strings.Repeat("t", 25))); slackError(err) != "invalid_arguments" {
		t.Errorf("25-character title: %v, want invalid_arguments", err)
	}
	v, err := api.OpenViewContext(ctx, trigger, modal("Invite a guest"))
	if err != nil || v.ID == "" || s.OpenedView(trigger) != v.ID {
		t.Fatalf("open: %v %+v", err, v)
	}
	if _, err := api.OpenViewContext(ctx, trigger, modal("Again")); slackError(err) != "exchanged_trigger_id" {
		t.Errorf("reused trigger: %v, want exchanged_trigger_id", err)
	}
	if pushed, err := api.PushViewContext(ctx, s.NewTriggerID(), modal("Details")); err != nil || pushed.ID == v.ID {
		t.Errorf("push: %v %+v", err, pushed)
	}
	if _, err := api.OpenViewContext(ctx, "made-up", modal("x")); slackError(err) != "invalid_trigger_id" {
		t.Errorf("unknown trigger: %v, want invalid_trigger_id", err)
	}
	if _, err := slack.New("xoxp-user", slack.OptionAPIURL(s.APIURL())).OpenViewContext(ctx, s.NewTriggerID(), modal("x")); slackError(err) != "not_authed" {
		t.Errorf("user token: %v, want not_authed", err)
	}
}

func TestFailAndRetryAfter(t *testing.T) {
	s := New()
	defer s.Close()
	s.Fail("chat.postMessage", 1, Fault{Status: http.StatusTooManyRequests, RetryAfter: "2"})
	api := client(s)
	_, _, err := api.PostMessageContext(t.Context(), "D1", slack.MsgOptionText("hi", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 2*time.Second {
		t.Fatalf("first post: %v, want rate limited for 2s", err)
	}
	if _, _, err := api.PostMessageContext(t.Context(), "D1", slack.MsgOptionText("hi", false)); err != nil {
		t.Fatalf("second post: %v", err)
	}
	if m := s.Messages(); len(m) != 1 || m[0].Text != "hi" {
		t.Errorf("messages = %+v", m)
	}
}

func TestSocketModeNeedsAppToken(t *testing.T) {
	s := New()
	defer s.Close()
	if _, _, err := client(s).StartSocketModeContext(t.Context()); slackError(err) != "not_authed" {
		t.Errorf("bot token opened a socket: %v", err)
	}
	_, url, err := client(s, slack.OptionAppLevelToken("xapp-1-test")).StartSocketModeContext(t.Context())
	if err != nil || !strings.HasPrefix(url, "ws://") {
		t.Fatalf("apps.connections.open: %q %v", url, err)
	}
	ws, _, err := websocket.DefaultDialer.DialContext(t.Context(), url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.Close()
	var hello map[string]any
	if err := ws.ReadJSON(&hello); err != nil || hello["type"] != "hello" {
		t.Fatalf("first frame = %v, %v; want hello", hello, err)
	}
	if _, resp, err := websocket.DefaultDialer.DialContext(t.Context(), url, nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("second dial with the same ticket succeeded")
	}
}

// A slack-go Socket Mode client receives a delivered slash command and its
// ack comes back to Deliver.
func TestSocketModeDeliver(t *testing.T) {
	s := New()
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := s.Deliver(ctx, "slash_commands", nil); err == nil {
		t.Error("Deliver with no app connected succeeded")
	}
	sm := socketmode.New(client(s, slack.OptionAppLevelToken("xapp-1-test")))
	go func() { _ = sm.RunContext(ctx) }()
	go func() {
		for evt := range sm.Events {
			if evt.Type != socketmode.EventTypeSlashCommand {
				continue
			}
			cmd := evt.Data.(slack.SlashCommand)
			_ = sm.AckCtx(ctx, evt.Request.EnvelopeID, map[string]string{"text": "got " + cmd.Text})
		}
	}()
	if err := s.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	ack, err := s.Deliver(ctx, "slash_commands", map[string]string{"command": "/x", "text": "hello", "is_enterprise_install": "false"})
	if err != nil || string(ack.Payload) != `{"text":"got hello"}` {
		t.Fatalf("ack = %s, %v", ack.Payload, err)
	}
	if err := s.Disconnect(); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitConnected(ctx, 2); err != nil {
		t.Fatalf("client did not reconnect: %v", err)
	}
}

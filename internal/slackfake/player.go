package slackfake

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Player plays Slack's side towards a bot: it sends slash commands,
// interaction payloads (view_submission, block_actions: Press) and Events
// API events (Event, OpenHome) exactly as Slack does (signed HTTP requests,
// or Socket Mode envelopes when Socket is set), and applies the bot's
// view_submission responses to the fake's views.
type Player struct {
	Socket bool   // deliver over the Slack fake's Socket Mode connection
	BotURL string // base URL of the bot, e.g. http://127.0.0.1:3000
	Secret string // signing secret
	Team   string
	Slack  *Server
	Client *http.Client
	Now    func() time.Time // signing time; nil: time.Now
}

// Response is the bot's HTTP answer.
type Response struct {
	Status int
	Body   []byte
}

// JSON decodes the answer's body.
func (r Response) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

func (p *Player) post(ctx context.Context, path string, form url.Values) (Response, error) {
	if p.Socket {
		return p.deliver(ctx, path, form)
	}
	return p.send(ctx, path, "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
}

func (p *Player) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// send POSTs a signed body to the bot, with any extra headers.
func (p *Player) send(ctx context.Context, path, contentType string, body []byte, header http.Header) (Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.BotURL+path, bytes.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", contentType)
	Sign(req, body, p.Secret, p.now())
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Body: b}, err
}

// deliver sends what post would as a Socket Mode envelope: a slash
// command's fields become a JSON object of strings (as Slack sends them),
// an interaction is its payload. The ack's payload is the response body.
func (p *Player) deliver(ctx context.Context, path string, form url.Values) (Response, error) {
	var (
		typ     string
		payload any
	)
	switch path {
	case "/slack/commands":
		fields := map[string]string{"is_enterprise_install": "false"}
		for k := range form {
			fields[k] = form.Get(k)
		}
		typ, payload = "slash_commands", fields
	case "/slack/interactions":
		typ, payload = "interactive", json.RawMessage(form.Get("payload"))
	default:
		return Response{}, fmt.Errorf("slackfake: no Socket Mode envelope for %s", path)
	}
	ack, err := p.Slack.Deliver(ctx, typ, payload)
	if err != nil {
		return Response{}, err
	}
	return ackResponse(ack), nil
}

// ackResponse is a Socket Mode ack as the HTTP answer it stands for.
func ackResponse(ack Ack) Response {
	body := []byte(ack.Payload)
	if string(body) == "null" {
		body = nil
	}
	return Response{Status: http.StatusOK, Body: body}
}

// Command runs a slash command as user and returns the answer and the ID
// of the view the bot opened with its trigger ("" if none).
func (p *Player) Command(ctx context.Context, user, command, text string) (Response, string, error) {
	trigger := p.Slack.NewTriggerID()
	resp, err := p.CommandWithTrigger(ctx, user, command, text, trigger)
	if err != nil {
		return resp, "", err
	}
	return resp, p.Slack.OpenedView(trigger), nil
}

// CommandWithTrigger runs a slash command carrying trigger, an ID from
// NewTriggerID, and returns the bot's answer.
func (p *Player) CommandWithTrigger(ctx context.Context, user, command, text, trigger string) (Response, error) {
	return p.post(ctx, "/slack/commands", url.Values{
		"token": {"unused"}, "team_id": {p.Team}, "team_domain": {"contoso"}, "channel_id": {"C0GENERAL"},
		"channel_name": {"general"}, "user_id": {user}, "user_name": {"inviter"}, "command": {command}, "text": {text},
		"api_app_id": {AppID}, "response_url": {"https://hooks.slack.com/commands/T/1/x"}, "trigger_id": {trigger},
	})
}

// Interact posts an interaction payload (payload=<json>).
func (p *Player) Interact(ctx context.Context, payload any) (Response, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return Response{}, err
	}
	return p.post(ctx, "/slack/interactions", url.Values{"payload": {string(raw)}})
}

// Submit submits view viewID as user with the given state values
// (block_id → action_id → value object, as Slack sends them). An "update"
// answer is applied to the fake, as Slack would.
func (p *Player) Submit(ctx context.Context, user, viewID string, values map[string]map[string]any) (Response, error) {
	raw, ok := p.Slack.View(viewID)
	if !ok {
		return Response{}, fmt.Errorf("slackfake: no view %s", viewID)
	}
	var view map[string]any
	if err := json.Unmarshal(raw, &view); err != nil {
		return Response{}, err
	}
	view["state"] = map[string]any{"values": values}
	resp, err := p.Interact(ctx, map[string]any{
		"type": "view_submission", "team": map[string]any{"id": p.Team}, "user": map[string]any{"id": user},
		"api_app_id": AppID, "trigger_id": p.Slack.NewTriggerID(), "view": view,
	})
	if err != nil || resp.Status != http.StatusOK {
		return resp, err
	}
	var ack struct {
		ResponseAction string          `json:"response_action"`
		View           json.RawMessage `json:"view"`
	}
	if json.Unmarshal(resp.Body, &ack) == nil && ack.ResponseAction == "update" {
		p.Slack.SetView(viewID, ack.View)
	}
	return resp, nil
}

// Text is a plain-text input's state value.
func Text(s string) map[string]any { return map[string]any{"type": "plain_text_input", "value": s} }

// Radio is a radio group's state value.
func Radio(v string) map[string]any {
	return map[string]any{"type": "radio_buttons", "selected_option": map[string]any{"value": v}}
}

// Multi is a multi-select's state value.
func Multi(vs ...string) map[string]any {
	opts := make([]any, len(vs))
	for i, v := range vs {
		opts[i] = map[string]any{"value": v}
	}
	return map[string]any{"type": "multi_static_select", "selected_options": opts}
}

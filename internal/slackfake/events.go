package slackfake

// The Events API and block_actions, as Slack sends them.
// https://docs.slack.dev/apis/events-api/
// https://docs.slack.dev/reference/interaction-payloads/block_actions-payload

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

func eventTS(t time.Time) string { return fmt.Sprintf("%d.%06d", t.Unix(), t.Nanosecond()/1000) }

// EventCallback wraps an inner event in the event_callback envelope Slack
// sends, with a fresh event_id.
func (p *Player) EventCallback(event map[string]any) map[string]any {
	now := p.now()
	return map[string]any{
		"token": "unused", "team_id": p.Team, "context_team_id": p.Team, "context_enterprise_id": nil,
		"api_app_id": AppID, "event": event, "type": "event_callback",
		"event_id": "Ev" + strings.ToUpper(randomHex(5)), "event_time": now.Unix(),
		"authorizations": []any{map[string]any{
			"enterprise_id": nil, "team_id": p.Team, "user_id": BotUserID, "is_bot": true, "is_enterprise_install": false,
		}},
		"is_ext_shared_channel": false, "event_context": "4-" + randomHex(12),
	}
}

// Event sends an inner event (e.g. {"type":"app_home_opened",...}) as
// Slack does: an event_callback, signed JSON POSTed to /slack/events, or an
// events_api Socket Mode envelope whose payload is the event_callback.
func (p *Player) Event(ctx context.Context, event map[string]any) (Response, error) {
	return p.SendEvent(ctx, p.EventCallback(event), 0, "")
}

// SendEvent delivers an event_callback built by EventCallback. attempt > 0
// makes it a redelivery, as Slack retries: X-Slack-Retry-Num and
// X-Slack-Retry-Reason headers over HTTP, retry_attempt and retry_reason in
// the Socket Mode envelope. Sending the same callback again repeats its
// event_id, as Slack's retries do.
func (p *Player) SendEvent(ctx context.Context, callback map[string]any, attempt int, reason string) (Response, error) {
	if p.Socket {
		ack, err := p.Slack.deliver(ctx, "events_api", callback, attempt, reason)
		if err != nil {
			return Response{}, err
		}
		return ackResponse(ack), nil
	}
	body, err := json.Marshal(callback)
	if err != nil {
		return Response{}, err
	}
	var h http.Header
	if attempt > 0 {
		h = http.Header{}
		h.Set("X-Slack-Retry-Num", strconv.Itoa(attempt))
		h.Set("X-Slack-Retry-Reason", reason)
	}
	return p.send(ctx, "/slack/events", "application/json", body, h)
}

// FileShared sends the file_shared event Slack sends when user shares file
// (see Server.ShareFile) in channel.
func (p *Player) FileShared(ctx context.Context, user, channel, file string) (Response, error) {
	return p.Event(ctx, map[string]any{"type": "file_shared", "channel_id": channel, "file_id": file,
		"user_id": user, "file": map[string]any{"id": file}, "event_ts": eventTS(p.now())})
}

// OpenHome sends app_home_opened for the user's Home tab, carrying the
// Home tab view last published for them, if any, as Slack does.
func (p *Player) OpenHome(ctx context.Context, user string) (Response, error) {
	ev := map[string]any{"type": "app_home_opened", "user": user, "channel": DMChannel(user), "tab": "home", "event_ts": eventTS(p.now())}
	if v, ok := p.Slack.HomeView(user); ok {
		ev["view"] = v
	}
	return p.Event(ctx, ev)
}

// MessageContainer is the block_actions container of a message's
// interactive elements.
func MessageContainer(m Message) map[string]any {
	return map[string]any{"type": "message", "message_ts": m.TS, "channel_id": m.Channel, "is_ephemeral": m.Ephemeral}
}

// HomeContainer is the block_actions container of a user's Home tab.
func HomeContainer(userID string) map[string]any { return ViewContainer(HomeViewID(userID)) }

// ViewContainer is the block_actions container of a view (modal or Home tab).
func ViewContainer(viewID string) map[string]any {
	return map[string]any{"type": "view", "view_id": viewID}
}

// Press has user press the interactive element actionID (a button, an
// overflow or select menu option: value is the option's value) in the
// message or view the container points at, and sends the block_actions
// payload as Slack does. The element must exist in the container's
// current blocks (in block blockID, unless blockID is ""); a button's value
// is taken from the element if value is "" and must match it otherwise.
// To send a payload no Slack user could produce, use Action.
func (p *Player) Press(ctx context.Context, user string, container map[string]any, actionID, value, blockID string) (Response, error) {
	resp, _, err := p.PressOpen(ctx, user, container, actionID, value, blockID)
	return resp, err
}

// PressOpen is Press, also returning the ID of the view the bot opened
// with the payload's trigger_id ("" if none).
func (p *Player) PressOpen(ctx context.Context, user string, container map[string]any, actionID, value, blockID string) (Response, string, error) {
	blocks, err := p.containerBlocks(container)
	if err != nil {
		return Response{}, "", err
	}
	action, err := findAction(blocks, actionID, value, blockID)
	if err != nil {
		return Response{}, "", err
	}
	trigger := p.Slack.NewTriggerID()
	resp, err := p.action(ctx, user, container, action, trigger)
	if err != nil {
		return resp, "", err
	}
	return resp, p.Slack.OpenedView(trigger), nil
}

// Action sends a block_actions payload for one action object (action_id,
// block_id, type, value…) in container, without checking that the element
// exists: for forged or stale payloads.
func (p *Player) Action(ctx context.Context, user string, container, action map[string]any) (Response, error) {
	return p.action(ctx, user, container, action, p.Slack.NewTriggerID())
}

func (p *Player) action(ctx context.Context, user string, container, action map[string]any, trigger string) (Response, error) {
	if _, ok := action["action_ts"]; !ok {
		action["action_ts"] = eventTS(p.now())
	}
	payload := map[string]any{
		"type": "block_actions", "token": "unused", "api_app_id": AppID, "trigger_id": trigger,
		"user":      map[string]any{"id": user, "username": strings.ToLower(user), "name": strings.ToLower(user), "team_id": p.Team},
		"team":      map[string]any{"id": p.Team, "domain": "contoso"},
		"container": container, "actions": []any{action},
		"enterprise": nil, "is_enterprise_install": false,
	}
	switch container["type"] {
	case "message":
		channel, _ := container["channel_id"].(string)
		ts, _ := container["message_ts"].(string)
		eph, _ := container["is_ephemeral"].(bool)
		name := "general"
		if strings.HasPrefix(channel, "D") {
			name = "directmessage"
		}
		payload["channel"] = map[string]any{"id": channel, "name": name}
		payload["response_url"] = "https://hooks.slack.com/actions/" + p.Team + "/1/x"
		payload["state"] = map[string]any{"values": map[string]any{}}
		if m, ok := p.Slack.messageAt(channel, ts, eph); ok && !eph {
			payload["message"] = m.apiJSON() // Slack sends no message for ephemeral ones
		}
	case "view":
		id, _ := container["view_id"].(string)
		raw, ok := p.Slack.View(id)
		if !ok {
			return Response{}, fmt.Errorf("slackfake: no view %s", id)
		}
		var view map[string]any
		if err := json.Unmarshal(raw, &view); err != nil {
			return Response{}, err
		}
		if _, ok := view["state"]; !ok {
			view["state"] = map[string]any{"values": map[string]any{}}
		}
		payload["view"] = view
	}
	return p.Interact(ctx, payload)
}

// containerBlocks returns the current blocks of the container's message or
// view.
func (p *Player) containerBlocks(container map[string]any) ([]any, error) {
	var raw json.RawMessage
	switch container["type"] {
	case "message":
		channel, _ := container["channel_id"].(string)
		ts, _ := container["message_ts"].(string)
		eph, _ := container["is_ephemeral"].(bool)
		m, ok := p.Slack.messageAt(channel, ts, eph)
		if !ok {
			return nil, fmt.Errorf("slackfake: no message %s in %s", ts, channel)
		}
		raw = m.Blocks
	case "view":
		id, _ := container["view_id"].(string)
		v, ok := p.Slack.View(id)
		if !ok {
			return nil, fmt.Errorf("slackfake: no view %s", id)
		}
		var view struct {
			Blocks json.RawMessage `json:"blocks"`
		}
		if err := json.Unmarshal(v, &view); err != nil {
			return nil, err
		}
		raw = view.Blocks
	default:
		return nil, fmt.Errorf("slackfake: unknown container type %v", container["type"])
	}
	var blocks []any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &blocks); err != nil {
			return nil, err
		}
	}
	return blocks, nil
}

// findAction finds element actionID among blocks and builds the action
// object Slack sends when it is used with value.
func findAction(blocks []any, actionID, value, blockID string) (map[string]any, error) {
	var mismatch error // an element with the action ID but not the value
	for i, b := range blocks {
		block, _ := b.(map[string]any)
		bid, _ := block["block_id"].(string)
		if bid == "" {
			bid = fmt.Sprintf("blk%d", i) // Slack generates one
		}
		if blockID != "" && bid != blockID {
			continue
		}
		var elems []any
		if es, ok := block["elements"].([]any); ok {
			elems = append(elems, es...)
		}
		for _, k := range []string{"accessory", "element"} {
			if e, ok := block[k]; ok {
				elems = append(elems, e)
			}
		}
		for _, e := range elems {
			el, _ := e.(map[string]any)
			if id, _ := el["action_id"].(string); id != actionID {
				continue
			}
			a, err := buildAction(el, bid, value)
			if err == nil {
				return a, nil
			}
			mismatch = err // e.g. another row's menu: keep looking
		}
	}
	if mismatch != nil {
		return nil, mismatch
	}
	return nil, fmt.Errorf("slackfake: no element %q (block %q) in the container's blocks", actionID, blockID)
}

func buildAction(el map[string]any, blockID, value string) (map[string]any, error) {
	typ, _ := el["type"].(string)
	actionID := el["action_id"]
	action := map[string]any{"action_id": actionID, "block_id": blockID, "type": typ}
	switch typ {
	case "button":
		v, _ := el["value"].(string)
		if value != "" && value != v {
			return nil, fmt.Errorf("slackfake: button %v has value %q, not %q", actionID, v, value)
		}
		action["value"] = v
		if t, ok := el["text"]; ok {
			action["text"] = t
		}
	case "overflow", "static_select", "radio_buttons":
		opts, _ := el["options"].([]any)
		if groups, ok := el["option_groups"].([]any); ok {
			for _, g := range groups {
				gopts, _ := g.(map[string]any)["options"].([]any)
				opts = append(opts, gopts...)
			}
		}
		for _, o := range opts {
			if v, _ := o.(map[string]any)["value"].(string); v == value {
				action["selected_option"] = o
				return action, nil
			}
		}
		return nil, fmt.Errorf("slackfake: %s %v has no option %q", typ, actionID, value)
	default:
		action["value"] = value
	}
	return action, nil
}

// messageAt returns the current version of a message, ephemeral or not.
func (s *Server) messageAt(channel, ts string, ephemeral bool) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.messages {
		if m.Ephemeral == ephemeral && m.Channel == channel && m.TS == ts {
			return m, true
		}
	}
	return Message{}, false
}

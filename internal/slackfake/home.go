package slackfake

// views.publish (Home tabs), chat.update and the accessors tests use to see
// what the bot showed a user.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Identity of the bot in the fake workspace, as it appears in payloads.
const (
	AppID     = "A0INVITEBOT"
	BotID     = "B0INVITEBOT"
	BotUserID = "U0INVITEBOT"
)

// HomeViewID is the ID of a user's Home tab view. Slack keeps one Home tab
// view per user and app, and its ID does not change when it is republished.
func HomeViewID(userID string) string { return "VHOME" + userID }

// viewHash returns a stored view's hash.
func viewHash(raw json.RawMessage) string {
	var v struct {
		Hash string `json:"hash"`
	}
	_ = json.Unmarshal(raw, &v)
	return v.Hash
}

// viewsPublish publishes a Home tab: {"user_id", "view", "hash"?} as JSON
// (slack-go) or form fields with view as a JSON string.
func (s *Server) viewsPublish(_ http.ResponseWriter, _ *http.Request, f url.Values, j map[string]any) any {
	var (
		user, hash string
		view       map[string]any
	)
	if j != nil {
		user, _ = j["user_id"].(string)
		hash, _ = j["hash"].(string)
		view, _ = j["view"].(map[string]any)
	} else {
		user, hash = f.Get("user_id"), f.Get("hash")
		_ = json.Unmarshal([]byte(f.Get("view")), &view)
	}
	if user == "" {
		return slackErr("invalid_arguments")
	}
	if e := checkView(view, "home"); e != "" {
		return slackErr(e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := HomeViewID(user)
	if hash != "" && hash != viewHash(s.views[id]) {
		return slackErr("hash_conflict")
	}
	view["id"], view["hash"] = id, newHash()
	view["app_id"], view["bot_id"] = AppID, BotID
	if _, ok := view["state"]; !ok {
		view["state"] = map[string]any{"values": map[string]any{}}
	}
	s.views[id], _ = json.Marshal(view)
	s.homes[user] = id
	s.signal()
	return map[string]any{"ok": true, "view": view}
}

// HomeView returns the Home tab last published for a user (with its id and
// hash, as views.publish answered).
func (s *Server) HomeView(userID string) (json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.homes[userID]
	if !ok {
		return nil, false
	}
	return s.views[id], true
}

// chatUpdate edits a posted (non-ephemeral) message in place. As in Slack,
// fields left out are kept: blocks (send [] to remove them), text and
// metadata (send {} to remove it); the channel must be a channel ID (a DM's
// D… ID, not a user ID).
func (s *Server) chatUpdate(_ http.ResponseWriter, _ *http.Request, f url.Values, _ map[string]any) any {
	channel, ts := f.Get("channel"), f.Get("ts")
	switch {
	case channel == "" || strings.HasPrefix(channel, "U") || strings.HasPrefix(channel, "W"):
		return slackErr("channel_not_found")
	case ts == "":
		return slackErr("message_not_found")
	case !f.Has("text") && !f.Has("blocks") && !f.Has("attachments"):
		return slackErr("no_text")
	}
	if e := checkMessage(f); e != "" {
		return slackErr(e)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(channel, ts)
	if i < 0 {
		return slackErr("message_not_found")
	}
	m := &s.messages[i]
	if f.Has("text") {
		m.Text = f.Get("text")
	}
	if f.Has("blocks") {
		m.Blocks = nil
		if b := f.Get("blocks"); b != "" && b != "[]" {
			m.Blocks = json.RawMessage(b)
		}
	}
	if f.Has("metadata") {
		m.Metadata = nil
		if meta := f.Get("metadata"); meta != "" && meta != "{}" {
			m.Metadata = json.RawMessage(meta)
		}
	}
	m.Edited++
	s.signal()
	return map[string]any{"ok": true, "channel": channel, "ts": ts, "text": m.Text, "message": m.apiJSON()}
}

// find returns the index of the non-ephemeral message channel/ts, or -1;
// s.mu must be held.
func (s *Server) find(channel, ts string) int {
	for i, m := range s.messages {
		if !m.Ephemeral && m.Channel == channel && m.TS == ts {
			return i
		}
	}
	return -1
}

// Message returns the current version of the message channel/ts.
func (s *Server) Message(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.find(channel, ts); i >= 0 {
		return s.messages[i], true
	}
	return Message{}, false
}

// DMs returns the (non-ephemeral) messages in the bot's DM with a user, in
// order; the latest is last.
func (s *Server) DMs(userID string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages {
		if m.Channel == DMChannel(userID) && !m.Ephemeral {
			out = append(out, m)
		}
	}
	return out
}

// apiJSON is the message as Slack's API shows it (chat.* answers and
// block_actions payloads).
func (m Message) apiJSON() map[string]any {
	out := map[string]any{"type": "message", "ts": m.TS, "text": m.Text, "user": BotUserID, "bot_id": BotID, "app_id": AppID}
	if len(m.Blocks) > 0 {
		out["blocks"] = m.Blocks
	}
	if m.Edited > 0 {
		out["edited"] = map[string]any{"user": BotUserID, "ts": m.TS}
	}
	return out
}

// newHash returns a view hash shaped like Slack's ("1712345678.AbC123ef").
func newHash() string { return strconv.FormatInt(time.Now().Unix(), 10) + "." + randomHex(4) }

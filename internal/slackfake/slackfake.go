// Package slackfake is a Slack Web API fake built on slack-go's slacktest:
// views.open/update/push/publish (single-use trigger IDs, external_id, hash,
// Block Kit limits), conversations.open, conversations.history (message
// metadata with include_all_metadata), chat.postMessage/postEphemeral/update
// (message metadata), users.lookupByEmail and users.info, files upload v2
// (files.getUploadURLExternal, the upload URL, files.completeUploadExternal),
// Workflow Builder custom steps (function_executed events,
// functions.completeSuccess/completeError with the workflow token),
// with recording, failure injection and Slack's published rate limits
// (EnforceLimits); and a Socket Mode
// endpoint (apps.connections.open and its WebSocket). It also signs inbound
// requests exactly as Slack does, so tests and the demo can play Slack over
// HTTP or Socket Mode.
package slackfake

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack/slacktest"
)

// Call is one recorded Web API call.
type Call struct {
	Method string
	Form   url.Values     // form-encoded calls
	JSON   map[string]any // JSON calls (views.*)
	Error  string         // the "error" answered, if not ok
	At     time.Time      // when the request arrived
}

// Message is a posted message.
type Message struct {
	Channel, TS, Text, User string // User: the recipient of an ephemeral message
	Blocks                  json.RawMessage
	Ephemeral               bool
	// Metadata is the message metadata ({"event_type","event_payload"}),
	// if any was sent.
	Metadata json.RawMessage
	// Edited counts the chat.update calls that changed the message.
	Edited int
}

// Fault fails a method: HTTP status (with Retry-After) or a Slack error.
type Fault struct {
	Status     int
	RetryAfter string
	Error      string
}

// Server is the fake.
type Server struct {
	ts *slacktest.Server

	mu       sync.Mutex
	calls    []Call
	messages []Message
	views    map[string]json.RawMessage // view id → latest view
	homes    map[string]string          // user ID → published Home tab view id
	external map[string]string          // external_id → view id
	triggers map[string]bool            // issued trigger IDs → still unused
	opened   map[string]string          // trigger ID → view opened with it
	users    map[string][2]string       // email → id, real name
	ugroups  map[string][]string        // user group id → member ids
	scopes   string                     // SetScopes
	faults   map[string]*fault
	seq      int
	changed  chan struct{}

	// Socket Mode
	tickets   map[string]bool // single-use connection tickets
	conns     []*socketConn   // the app's open connections (replicas each hold one)
	connects  int
	pick      func(n int) int                 // which of n connections gets an envelope (SetSocketPicker)
	delivered []int                           // envelopes sent per connection ever opened
	pending   map[string]chan json.RawMessage // envelope ID → ack

	uploads     fileUploads // files.getUploadURLExternal … completeUploadExternal
	fileURLBase string      // SetFileURLBase

	functions   map[string]Function   // DefineFunction
	executions  map[string]*execution // function_execution_id → run
	completions []Completion

	chaos      map[string]*chaos // SetChaos
	chaosStats ChaosStats

	limits      bool                   // EnforceLimits
	limitWindow time.Duration          // a tier's minute (SetLimitWindow)
	admitted    map[string][]time.Time // method (chat.postMessage: and channel) → admissions in the window
}

type fault struct {
	Fault
	n int
}

// New starts a fake.
func New() *Server {
	s := &Server{views: map[string]json.RawMessage{}, homes: map[string]string{}, external: map[string]string{}, triggers: map[string]bool{}, opened: map[string]string{},
		users: map[string][2]string{}, ugroups: map[string][]string{}, faults: map[string]*fault{},
		tickets: map[string]bool{}, pending: map[string]chan json.RawMessage{}}
	s.ts = slacktest.NewTestServer(func(c slacktest.Customize) {
		for name, h := range map[string]func(http.ResponseWriter, *http.Request, url.Values, map[string]any) any{
			"views.open":            s.viewsOpen,
			"views.update":          s.viewsUpdate,
			"views.push":            s.viewsOpen, // the same trigger and view rules; the fake keeps no view stack
			"views.publish":         s.viewsPublish,
			"chat.update":           s.chatUpdate,
			"conversations.open":    s.conversationsOpen,
			"conversations.history": s.conversationsHistory,
			"chat.postMessage":      s.postMessage,
			"chat.postEphemeral":    s.postMessage,
			"users.lookupByEmail": func(_ http.ResponseWriter, _ *http.Request, f url.Values, _ map[string]any) any {
				s.mu.Lock()
				defer s.mu.Unlock()
				u, ok := s.users[strings.ToLower(f.Get("email"))]
				if !ok {
					return slackErr("users_not_found")
				}
				return map[string]any{"ok": true, "user": map[string]any{"id": u[0], "name": u[1], "real_name": u[1]}}
			},
			"functions.completeSuccess":    s.functionsComplete(true),
			"functions.completeError":      s.functionsComplete(false),
			"apps.connections.open":        s.appsConnectionsOpen,
			"auth.test":                    s.authTest,
			"bots.info":                    s.botsInfo,
			"files.getUploadURLExternal":   s.filesGetUploadURL,
			"files.completeUploadExternal": s.filesCompleteUpload,
			"files.info":                   s.filesInfo,
			"usergroups.users.list": func(_ http.ResponseWriter, _ *http.Request, f url.Values, _ map[string]any) any {
				s.mu.Lock()
				defer s.mu.Unlock()
				m, ok := s.ugroups[f.Get("usergroup")]
				if !ok {
					return slackErr("no_such_subteam")
				}
				return map[string]any{"ok": true, "users": append([]string{}, m...)}
			},
			"users.info": func(_ http.ResponseWriter, _ *http.Request, f url.Values, _ map[string]any) any {
				// A user added with AddUser has their email in the profile.
				id, name, email := f.Get("user"), "Ann Inviter", ""
				s.mu.Lock()
				for e, u := range s.users {
					if u[0] == id {
						name, email = u[1], e
					}
				}
				s.mu.Unlock()
				return map[string]any{"ok": true, "user": map[string]any{"id": id, "name": "inviter", "real_name": name,
					"profile": map[string]any{"real_name": name, "email": email}}}
			},
		} {
			c.Handle("/"+name, s.wrap(name, h))
		}
		c.Handle("/socket-mode/link", s.serveSocket)
		c.Handle(uploadPath, s.serveUpload)
		c.Handle(downloadPath, s.serveDownload)
	})
	s.ts.Start()
	return s
}

// APIURL is the base URL for slack.OptionAPIURL.
func (s *Server) APIURL() string { return s.ts.GetAPIURL() }

// Close stops the fake.
func (s *Server) Close() {
	s.mu.Lock()
	conns := slices.Clone(s.conns)
	s.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
	s.ts.Stop()
}

func slackErr(code string) map[string]any { return map[string]any{"ok": false, "error": code} }

// wrap parses the request, applies faults and chaos, records the call and
// wakes WaitFor.
func (s *Server) wrap(name string, h func(http.ResponseWriter, *http.Request, url.Values, map[string]any) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		call := Call{Method: name, At: at}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			_ = json.Unmarshal(body, &call.JSON)
		} else {
			call.Form, _ = url.ParseQuery(string(body))
		}
		var resp any
		s.mu.Lock()
		f := s.faults[name]
		if f != nil && f.n != 0 {
			f.n--
		} else {
			f = nil
		}
		s.mu.Unlock()
		prefix := "xoxb-"
		switch {
		case name == "apps.connections.open":
			prefix = "xapp-" // only an app-level token opens a socket
		case strings.HasPrefix(name, "functions."):
			prefix = "" // the workflow token: functionsComplete checks it
		}
		switch {
		case !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "+prefix) && !strings.HasPrefix(call.Form.Get("token"), prefix):
			resp = slackErr("not_authed")
		case f != nil && f.Status != 0:
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			w.WriteHeader(f.Status)
			call.Error = strconv.Itoa(f.Status)
		case f != nil:
			resp = slackErr(f.Error)
		case s.overLimit(w, name, &call):
			// answered 429 ratelimited
		case s.applyChaos(w, r, name, &call):
			// answered with a failure
		default:
			resp = h(w, r, call.Form, call.JSON)
		}
		if m, ok := resp.(map[string]any); ok && m["ok"] == false {
			call.Error, _ = m["error"].(string)
		}
		if resp != nil {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(resp)
		}
		s.mu.Lock()
		s.calls = append(s.calls, call)
		s.signal()
		s.mu.Unlock()
	}
}

// NewTriggerID issues a single-use trigger ID, as Slack does per command.
func (s *Server) NewTriggerID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := fmt.Sprintf("%d.%d.trigger", time.Now().Unix(), s.seq)
	s.triggers[id] = true
	return id
}

// AddUser makes users.lookupByEmail find a Slack user.
func (s *Server) AddUser(id, email, realName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[strings.ToLower(email)] = [2]string{id, realName}
}

// SetUserGroup sets a user group's members (usergroups.users.list).
func (s *Server) SetUserGroup(id string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ugroups[id] = append([]string{}, members...)
}

// Fail makes the next n calls of method fail (n < 0: always).
func (s *Server) Fail(method string, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[method] = &fault{Fault: f, n: n}
}

// Calls returns the calls of method ("" = all), in order.
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Messages returns the posted messages, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// View returns the latest version of a view.
func (s *Server) View(id string) (json.RawMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.views[id]
	return v, ok
}

// SetView replaces a view, as Slack does when it applies a
// view_submission's response_action "update".
// Like Slack, it keeps the view's ID and gives it a new hash.
func (s *Server) SetView(id string, view json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v map[string]any
	if json.Unmarshal(view, &v) == nil && v != nil {
		v["id"], v["hash"] = id, newHash()
		view, _ = json.Marshal(v)
		if ext, _ := v["external_id"].(string); ext != "" {
			s.external[ext] = id
		}
	}
	s.views[id] = view
	s.signal()
}

// signal wakes WaitFor; s.mu must be held.
func (s *Server) signal() {
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// WaitFor blocks until cond holds or ctx is done; it re-checks after every
// call the fake answers.
func (s *Server) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// checkView enforces the limits Slack enforces on views: the view's type
// must be one of types ("modal", "home"); a modal needs a title of at most
// 24 characters; modals and Home tabs hold at most 100 blocks;
// private_metadata ≤ 3000, callback_id and external_id ≤ 255 characters;
// the whole view ≤ 250 kB; block IDs are unique.
func checkView(v map[string]any, types ...string) string {
	if v == nil {
		return "invalid_arguments"
	}
	raw, _ := json.Marshal(v)
	typ, _ := v["type"].(string)
	title, _ := v["title"].(map[string]any)
	t, _ := title["text"].(string)
	blocks, _ := v["blocks"].([]any)
	meta, _ := v["private_metadata"].(string)
	callback, _ := v["callback_id"].(string)
	ext, _ := v["external_id"].(string)
	switch {
	case len(raw) > 250_000:
		return "view_too_large"
	case !slices.Contains(types, typ):
		return "invalid_arguments"
	case typ == "modal" && (t == "" || len([]rune(t)) > 24):
		return "invalid_arguments"
	case len(blocks) > 100, len(meta) > 3000, len(callback) > 255, len(ext) > 255:
		return "invalid_arguments"
	}
	seen := map[string]bool{}
	for _, b := range blocks {
		id, _ := b.(map[string]any)["block_id"].(string)
		if id != "" && seen[id] {
			return "duplicate_block_id"
		}
		seen[id] = true
	}
	return ""
}

func (s *Server) viewsOpen(_ http.ResponseWriter, _ *http.Request, _ url.Values, j map[string]any) any {
	trigger, _ := j["trigger_id"].(string)
	view, _ := j["view"].(map[string]any)
	s.mu.Lock()
	defer s.mu.Unlock()
	unused, issued := s.triggers[trigger]
	switch {
	case !issued:
		return slackErr("invalid_trigger_id")
	case !unused:
		return slackErr("exchanged_trigger_id")
	}
	if e := checkView(view, "modal"); e != "" {
		return slackErr(e)
	}
	s.triggers[trigger] = false
	s.seq++
	id := fmt.Sprintf("V%06d", s.seq)
	view["id"], view["hash"] = id, newHash()
	s.views[id], _ = json.Marshal(view)
	s.opened[trigger] = id
	return map[string]any{"ok": true, "view": view}
}

// OpenedView returns the ID of the view opened with a trigger ID.
func (s *Server) OpenedView(trigger string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opened[trigger]
}

func (s *Server) viewsUpdate(_ http.ResponseWriter, _ *http.Request, _ url.Values, j map[string]any) any {
	view, _ := j["view"].(map[string]any)
	id, _ := j["view_id"].(string)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ext, _ := j["external_id"].(string); id == "" && ext != "" {
		id = s.external[ext]
	}
	old, ok := s.views[id]
	if !ok {
		return slackErr("not_found")
	}
	if e := checkView(view, "modal", "home"); e != "" {
		return slackErr(e)
	}
	if hash, _ := j["hash"].(string); hash != "" && hash != viewHash(old) {
		return slackErr("hash_conflict")
	}
	view["id"], view["hash"] = id, newHash()
	s.views[id], _ = json.Marshal(view)
	return map[string]any{"ok": true, "view": view}
}

func (s *Server) conversationsOpen(_ http.ResponseWriter, _ *http.Request, f url.Values, _ map[string]any) any {
	return map[string]any{"ok": true, "channel": map[string]any{"id": "D" + strings.TrimPrefix(f.Get("users"), "U")}}
}

// DMChannel is the channel conversations.open returns for a user.
func DMChannel(userID string) string { return "D" + strings.TrimPrefix(userID, "U") }

// checkMessage applies chat.postMessage's and chat.update's limits to the
// blocks, text and metadata fields.
func checkMessage(f url.Values) string {
	var blocks []any
	if b := f.Get("blocks"); b != "" {
		if err := json.Unmarshal([]byte(b), &blocks); err != nil || len(blocks) > 50 {
			return "invalid_blocks"
		}
	}
	if len(f.Get("text")) > 40000 {
		return "msg_too_long"
	}
	if m := f.Get("metadata"); m != "" && m != "{}" {
		var meta struct {
			EventType    *string         `json:"event_type"`
			EventPayload json.RawMessage `json:"event_payload"`
		}
		if err := json.Unmarshal([]byte(m), &meta); err != nil || meta.EventType == nil || *meta.EventType == "" {
			return "invalid_metadata_format"
		}
		if len(meta.EventPayload) > 0 && meta.EventPayload[0] != '{' {
			return "invalid_metadata_schema"
		}
	}
	return ""
}

func (s *Server) postMessage(_ http.ResponseWriter, r *http.Request, f url.Values, _ map[string]any) any {
	if e := checkMessage(f); e != "" {
		return slackErr(e)
	}
	ephemeral := strings.HasSuffix(r.URL.Path, "postEphemeral")
	channel := f.Get("channel")
	if !ephemeral && strings.HasPrefix(channel, "U") {
		channel = DMChannel(channel) // a user ID posts to the app's DM with them
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	ts := fmt.Sprintf("%d.%06d", time.Now().Unix(), s.seq)
	m := Message{Channel: channel, TS: ts, Text: f.Get("text"), User: f.Get("user"),
		Blocks: json.RawMessage(f.Get("blocks")), Ephemeral: ephemeral}
	if meta := f.Get("metadata"); meta != "" && meta != "{}" {
		m.Metadata = json.RawMessage(meta)
	}
	s.messages = append(s.messages, m)
	if ephemeral {
		return map[string]any{"ok": true, "message_ts": ts}
	}
	return map[string]any{"ok": true, "channel": channel, "ts": ts, "message": m.apiJSON()}
}

// Sign sets Slack's signature headers on req: v0 HMAC-SHA256 of
// "v0:<ts>:<body>" keyed with the signing secret.
func Sign(req *http.Request, body []byte, secret string, ts time.Time) {
	t := strconv.FormatInt(ts.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%s:", t)
	mac.Write(body)
	req.Header.Set("X-Slack-Request-Timestamp", t)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
}

package bot

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
	"github.com/invitebot/invitebot/internal/slackfake"
)

const fuzzSecret = "s"

// fuzzHandler is the HTTP handler of a Bot on the Slack fake, with a
// Service on the in-memory fakes.
func fuzzHandler(f *testing.F) http.Handler {
	sf := slackfake.New()
	f.Cleanup(sf.Close)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := flows.New(flows.Config{Directory: flowstest.NewDirectory(), Store: flowstest.NewStore(), Notifier: &flowstest.Notifier{},
		Policy: fuzzPolicy("Portal"), PollInterval: -1, Logger: logger,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	f.Cleanup(svc.Close)
	b := New(Config{Client: slack.New("xoxb-test", slack.OptionAPIURL(sf.APIURL())), Service: svc,
		SigningSecret: fuzzSecret, Logger: logger})
	return b.Handler()
}

// post sends body to path, signed with the secret (or a wrong one), and
// checks the status: 200, 400, 401 or 413, and 401 for a forged signature.
func post(t *testing.T, h http.Handler, path string, body []byte, forged bool) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	secret := fuzzSecret
	if forged {
		secret = "not the secret"
	}
	slackfake.Sign(r, body, secret, time.Now())
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	switch c := w.Code; {
	case c != http.StatusOK && c != http.StatusBadRequest && c != http.StatusUnauthorized && c != http.StatusRequestEntityTooLarge:
		t.Fatalf("POST %s %q: status %d", path, body[:min(len(body), 200)], c)
	case forged && c != http.StatusUnauthorized:
		t.Fatalf("POST %s %q with a forged signature: status %d", path, body[:min(len(body), 200)], c)
	}
	if w.Code == http.StatusOK && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") && !json.Valid(w.Body.Bytes()) {
		t.Fatalf("POST %s: invalid JSON answer %q", path, w.Body.String())
	}
	return w
}

func FuzzInteractionHandler(f *testing.F) {
	view := func(callback, state string) string {
		return `{"type":"view_submission","team":{"id":"T1"},"user":{"id":"UINVITER"},"view":{"id":"V1","callback_id":"` + callback +
			`","private_metadata":"{\"inv\":\"inv_1\"}","state":{"values":` + state + `}}}`
	}
	for _, p := range []string{
		view(CallbackInvite, `{"email":{"email":{"type":"plain_text_input","value":"bob@fabrikam.com"}},"redirect_url":{"redirect_url":{"value":"https://x.example"}},"delivery":{"delivery":{"selected_option":{"value":"slack_link"}}},"display_name":{"display_name":{"value":"<!channel>"}}}`),
		view(CallbackInvite, `{"email":{"email":{"value":"<!channel>"}}}`),
		view(CallbackInvite, `null`),
		view(CallbackPick, `{"pick":{"pick":{"selected_option":{"value":"new"}}}}`),
		view(CallbackDeny, `{"reason":{"reason":{"value":"no"}}}`),
		view(CallbackConfirmDelete, `{}`),
		view(CallbackConvert, `{"convert_account":{"convert_account":{"value":"a@ourcompany.com"}}}`),
		`{"type":"view_closed","user":{"id":"UINVITER"},"view":{"callback_id":"invite_guest_pick","private_metadata":"{\"inv\":\"nope\"}"}}`,
		`{"type":"block_actions","user":{"id":"UADMIN"},"trigger_id":"t","actions":[{"action_id":"invitation_actions","selected_option":{"value":"delete_guest:inv_1"}},{"action_id":"resend","value":"inv_1"},{"action_id":"approve","value":"inv_1"},{"action_id":"dm_invitee","value":"inv_1"},{"action_id":"convert_open"},{"action_id":"extend","value":"x"}]}`,
		`{"type":"block_actions","actions":[null]}`,
		`{"type":"shortcut"}`, `{}`, `null`, `[]`, `"x"`, `{"type":"view_submission"}`, `{"type":"view_submission","view":{"state":{"values":{"pick":null}}}}`,
	} {
		f.Add(p, false, false)
	}
	f.Add("payload=%7B&payload=%7D", true, false)
	f.Add("%zz", true, false)
	f.Add("", true, true)
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, payload string, raw, forged bool) {
		body := payload
		if !raw {
			body = url.Values{"payload": {payload}}.Encode()
		}
		post(t, h, "/slack/interactions", []byte(body), forged)
	})
}

func FuzzCommandHandler(f *testing.F) {
	cmd := func(command, text, user string) string {
		return url.Values{"command": {command}, "text": {text}, "user_id": {user}, "team_id": {"T1"}, "trigger_id": {"1.2.trigger"},
			"channel_id": {"C1"}, "response_url": {"https://hooks.example/x"}}.Encode()
	}
	for _, c := range []string{
		cmd(Command, "", "UINVITER"), cmd(Command, "help", "UINVITER"), cmd(Command, "bob@fabrikam.com <!channel>", "UINVITER"),
		cmd(Command, "<mailto:a@b|a@b> Bob", "UINVITER"), cmd(Command, "convert <!channel> <@U1>", "UADMIN"),
		cmd(Command, "convert a@ourcompany.com", "UADMIN"), cmd(Command, "audit <!here>", "UADMIN"), cmd(Command, "audit 0", "UINVITER"),
		cmd("/other", "x", "UINVITER"), cmd("<!channel>", "", ""), "%zz", "command", "text=%", "",
	} {
		f.Add(c, false)
	}
	h := fuzzHandler(f)
	known := strings.NewReplacer("<internal account UPN or object ID>", "", "<external email>", "")
	f.Fuzz(func(t *testing.T, body string, forged bool) {
		w := post(t, h, "/slack/commands", []byte(body), forged)
		var m struct{ Text string }
		if w.Code == http.StatusOK && json.Unmarshal(w.Body.Bytes(), &m) == nil {
			checkNoMarkup(t, "command answer", known.Replace(m.Text))
		}
	})
}

func FuzzEventHandler(f *testing.F) {
	for _, e := range []string{
		`{"type":"url_verification","challenge":"abc"}`,
		`{"type":"url_verification","challenge":"<!channel>"}`,
		`{"type":"event_callback","team_id":"T1","event":{"type":"app_home_opened","user":"UINVITER","tab":"home"}}`,
		`{"type":"event_callback","event":{"type":"app_home_opened","user":"","tab":"home"}}`,
		`{"type":"event_callback","event":null}`, `{"type":"event_callback","event":[]}`,
		`{"type":"app_rate_limited"}`, `null`, `[]`, `{`, ``, `{"type":1}`,
	} {
		f.Add(e, false)
	}
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, body string, forged bool) {
		w := post(t, h, "/slack/events", []byte(body), forged)
		var ev struct{ Type, Challenge string }
		if w.Code == http.StatusOK && json.Unmarshal([]byte(body), &ev) == nil && ev.Type == "url_verification" && w.Body.String() != ev.Challenge {
			t.Fatalf("url_verification answered %q, want %q", w.Body.String(), ev.Challenge)
		}
	})
}

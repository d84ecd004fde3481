package bot

import (
	"bytes"
	"context"
	"encoding/json"
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

// logLines decodes JSON log lines.
func logLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range bytes.Lines(b) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// Ensure every line logged while a signed Slack request is served carries
// that request's ID, the one answered in X-Request-Id, and that another
// request gets another ID.
func TestRequestIDOnEveryLogLine(t *testing.T) {
	sf := slackfake.New()
	t.Cleanup(sf.Close)
	sf.Fail("views.open", 1, slackfake.Fault{Error: "expired_trigger_id"})
	var buf bytes.Buffer // nothing logs in the background: the service is not started
	log := slog.New(LogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	svc := flows.New(flows.Config{Directory: flowstest.NewDirectory(), Store: flowstest.NewStore(), Notifier: &flowstest.Notifier{},
		PollInterval: -1, Logger: log.With("component", "flows")})
	t.Cleanup(svc.Close)
	b := New(Config{Client: slack.New("xoxb-test", slack.OptionAPIURL(sf.APIURL())), Service: svc,
		SigningSecret: fuzzSecret, Logger: log.With("component", "bot")})
	h := b.Handler()
	body := []byte(url.Values{"command": {Command}, "user_id": {"U1"}, "team_id": {"T1"}, "trigger_id": {sf.NewTriggerID()}}.Encode())

	var ids []string
	for _, secret := range []string{fuzzSecret, "forged"} {
		buf.Reset()
		r := httptest.NewRequest(http.MethodPost, "/slack/commands", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		slackfake.Sign(r, body, secret, time.Now())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		id := w.Header().Get("X-Request-Id")
		lines := logLines(t, buf.Bytes())
		if id == "" || len(lines) < 2 {
			t.Fatalf("request signed with %q: X-Request-Id %q, %d log lines, want an ID and at least 2 lines:\n%s", secret, id, len(lines), buf.String())
		}
		for _, l := range lines {
			if l[LogKeyRequestID] != id {
				t.Errorf("line %q has request_id %v, want %s", l["msg"], l[LogKeyRequestID], id)
			}
		}
		ids = append(ids, id)
	}
	if ids[0] == ids[1] {
		t.Errorf("two requests share the ID %s", ids[0])
	}
}

// Ensure the handler adds the IDs a context carries, through With, and
// only once when wrapped twice.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	h := LogHandler(slog.NewJSONHandler(&buf, nil))
	if LogHandler(h) != h {
		t.Error("LogHandler wrapped its own handler again")
	}
	log := slog.New(LogHandler(h)).With("component", "flows")
	ctx := flows.WithInvitationID(WithRequestID(context.Background(), "r1"), "inv_1")
	log.InfoContext(ctx, "both")
	log.Info("neither")
	lines := logLines(t, buf.Bytes())
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	if l := lines[0]; l[LogKeyRequestID] != "r1" || l[LogKeyInvitationID] != "inv_1" || l["component"] != "flows" {
		t.Errorf("line = %v, want request_id r1, invitation_id inv_1, component flows", l)
	}
	if s := buf.String(); strings.Count(s, LogKeyRequestID) != 1 || strings.Count(s, LogKeyInvitationID) != 1 {
		t.Errorf("IDs added where the context has none, or twice:\n%s", s)
	}
}

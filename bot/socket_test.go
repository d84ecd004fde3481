package bot

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"
)

// Ensure a Socket Mode connection problem is logged with its cause, the
// attempt and the wait, and without the WebSocket ticket or a token.
func TestSocketConnectionProblemLogged(t *testing.T) {
	var logs bytes.Buffer
	b := New(Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	cause := errors.New(`failed to dial "wss://wss-primary.slack.com/link/?ticket=1a2b3c&app_id=A0APP": dial tcp: lookup wss-primary.slack.com: no such host (token xapp-1-A0APP-123-abc)`)
	b.socketEvent(t.Context(), nil, socketmode.Event{Type: socketmode.EventTypeConnectionError,
		Data: &slack.ConnectionErrorEvent{Attempt: 3, Backoff: 4 * time.Second, ErrorObj: cause}})
	b.socketEvent(t.Context(), nil, socketmode.Event{Type: socketmode.EventTypeErrorWriteFailed,
		Data: &socketmode.ErrorWriteFailed{Cause: errors.New("write: broken pipe")}})
	b.socketEvent(t.Context(), nil, socketmode.Event{Type: socketmode.EventTypeInvalidAuth, Data: &slack.InvalidAuthEvent{}})
	lines := logLines(t, logs.Bytes())
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3:\n%s", len(lines), logs.String())
	}
	if l := lines[0]; l["msg"] != "socket mode connection problem" || !strings.Contains(l["err"].(string), "no such host") ||
		l["attempt"] != 3.0 || l["retry_in"] != float64(4*time.Second) {
		t.Errorf("connection error line = %v", l)
	}
	if l := lines[1]; l["err"] != "write: broken pipe" {
		t.Errorf("write failure line = %v", l)
	}
	if l := lines[2]; l["level"] != "ERROR" || !strings.Contains(l["msg"].(string), "SLACK_APP_TOKEN") {
		t.Errorf("invalid auth line = %v", l)
	}
	for _, secret := range []string{"1a2b3c", "xapp-1"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log shows %q:\n%s", secret, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "ticket=REDACTED") {
		t.Errorf("ticket not redacted:\n%s", logs.String())
	}
}

package bot

import (
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
	"github.com/invitebot/invitebot/internal/slackfake"
)

func TestParseAuditDays(t *testing.T) {
	tests := []struct {
		args    []string
		days    int
		refused bool
	}{
		{nil, AuditDefaultDays, false},
		{[]string{"1"}, 1, false},
		{[]string{"7"}, 7, false},
		{[]string{"3650"}, 3650, false},
		{[]string{"0"}, 0, true},
		{[]string{"-3"}, 0, true},
		{[]string{"3651"}, 0, true},
		{[]string{"seven"}, 0, true},
		{[]string{"7d"}, 0, true},
		{[]string{"<!channel>"}, 0, true},
		{[]string{"7", "8"}, 0, true},
	}
	for _, tt := range tests {
		days, msg := parseAuditDays(tt.args)
		if days != tt.days || (msg != "") != tt.refused {
			t.Errorf("parseAuditDays(%q) = %d, %q; want %d, refused %v", tt.args, days, msg, tt.days, tt.refused)
		}
		if tt.refused && !strings.Contains(msg, "days") {
			t.Errorf("parseAuditDays(%q): %q does not name the days argument", tt.args, msg)
		}
		if strings.Contains(msg, "<!channel>") {
			t.Errorf("parseAuditDays(%q): the argument is not escaped: %q", tt.args, msg)
		}
	}
}

// auditEnv is a Bot on the Slack fake with a Service on in-memory fakes
// whose audit log holds one invitation's events.
type auditEnv struct {
	bot   *Bot
	slack *slackfake.Server
	store *flowstest.Store
}

func newAuditEnv(t *testing.T) *auditEnv {
	t.Helper()
	e := &auditEnv{slack: slackfake.New(), store: flowstest.NewStore()}
	t.Cleanup(e.slack.Close)
	svc := flows.New(flows.Config{Directory: flowstest.NewDirectory(), Store: e.store, Notifier: &flowstest.Notifier{},
		Policy: flows.Policy{Admins: []string{"UADMIN"}}, PollInterval: -1})
	e.bot = New(Config{Client: slack.New("xoxb-test", slack.OptionAPIURL(e.slack.APIURL())), Service: svc,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	now := time.Now()
	inv := &flows.Invitation{ID: "inv_1", State: flows.StateNotified, Request: flows.Request{Email: "bob@fabrikam.com"},
		History: []flows.Event{
			{At: now.Add(-40 * 24 * time.Hour), InvitationID: "inv_1", Actor: "UANN", Action: "requested", Detail: "old"},
			{At: now.Add(-time.Hour), InvitationID: "inv_1", ObjectID: "u-1", Actor: flows.ActorBot, Action: "invited", Detail: "=1+1"},
		}}
	if _, err := e.store.CreateInvitation(t.Context(), inv); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *auditEnv) run(t *testing.T, user, text string) string {
	t.Helper()
	resp := e.bot.command(t.Context(), slack.SlashCommand{Command: Command, TeamID: "T1", UserID: user, Text: text})
	m, ok := resp.(*slack.Msg)
	if !ok || m.ResponseType != slack.ResponseTypeEphemeral {
		t.Fatalf("/invite-guest %s answered %#v, want an ephemeral message", text, resp)
	}
	return m.Text
}

// Ensure an admin's audit command is acknowledged at once and the CSV of
// the requested days arrives in their DM.
func TestAuditCommandUploadsCSV(t *testing.T) {
	e := newAuditEnv(t)
	if got := e.run(t, "UADMIN", "audit 7"); !strings.Contains(got, "last 7 days") || !strings.Contains(got, "DM") {
		t.Errorf("ack = %q", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.slack.WaitFor(ctx, func() bool { return len(e.slack.Files()) == 1 }); err != nil {
		t.Fatalf("no file uploaded: %v (calls %+v)", err, e.slack.Calls(""))
	}
	f := e.slack.Files()[0]
	if f.Channel != slackfake.DMChannel("UADMIN") || !strings.HasSuffix(f.Name, ".csv") || !strings.Contains(f.Comment, "1 event") {
		t.Errorf("file = %+v", f)
	}
	rows, err := csv.NewReader(bytes.NewReader(f.Content)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0][0] != "time" || rows[1][1] != "inv_1" || rows[1][4] != "invited" || rows[1][5] != "'=1+1" {
		t.Errorf("csv = %q, want the header and the last week's event, defused", rows)
	}

	t.Run("DefaultDays", func(t *testing.T) {
		if got := e.run(t, "UADMIN", "audit"); !strings.Contains(got, "last 30 days") {
			t.Errorf("ack = %q", got)
		}
		if err := e.slack.WaitFor(ctx, func() bool { return len(e.slack.Files()) == 2 }); err != nil {
			t.Fatal(err)
		}
		if f := e.slack.Files()[1]; bytes.Count(f.Content, []byte("\n")) != 2 {
			t.Errorf("30 days: %s", f.Content)
		}
	})
}

// Ensure a non-admin and a bad days argument are refused at once, with
// nothing uploaded.
func TestAuditCommandRefusals(t *testing.T) {
	e := newAuditEnv(t)
	if got := e.run(t, "UANN", "audit 7"); !strings.Contains(got, "Only invitebot admins") {
		t.Errorf("non-admin: %q", got)
	}
	if got := e.run(t, "UADMIN", "audit lots"); !strings.Contains(got, "days") || !strings.Contains(got, "`lots`") {
		t.Errorf("bad days: %q", got)
	}
	time.Sleep(100 * time.Millisecond) // an upload would have started by now
	if n := len(e.slack.Calls("files.getUploadURLExternal")); n != 0 || len(e.slack.Files()) != 0 {
		t.Errorf("%d uploads after refusals", n)
	}
}

// Ensure a failed upload is reported to the admin by DM.
func TestAuditCommandUploadFailure(t *testing.T) {
	e := newAuditEnv(t)
	e.slack.Fail("files.completeUploadExternal", 1, slackfake.Fault{Error: "missing_scope"})
	e.run(t, "UADMIN", "audit 7")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	dm := func() []slackfake.Message {
		var out []slackfake.Message
		for _, m := range e.slack.Messages() {
			if m.Channel == slackfake.DMChannel("UADMIN") && !m.Ephemeral {
				out = append(out, m)
			}
		}
		return out
	}
	if err := e.slack.WaitFor(ctx, func() bool { return len(dm()) == 1 }); err != nil {
		t.Fatalf("no DM about the failure: %v", err)
	}
	if got := dm()[0].Text; !strings.Contains(got, "files:write") {
		t.Errorf("DM = %q, want it to name the missing scope", got)
	}
	if len(e.slack.Files()) != 0 {
		t.Errorf("files = %+v", e.slack.Files())
	}
}

package bot

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// Ensure a notice's message carries its ID as metadata, and that a notice
// being recovered is not posted again when its DM already has it (the
// process died after Slack took it), but is when it has not.
func TestNoticeNotPostedTwice(t *testing.T) {
	sf := slackfake.New()
	t.Cleanup(sf.Close)
	svc := flows.New(flows.Config{Directory: flowstest.NewDirectory(), Store: flowstest.NewStore(), Notifier: &flowstest.Notifier{}, PollInterval: -1})
	t.Cleanup(svc.Close)
	b := New(Config{Client: slack.New("xoxb-test", slack.OptionAPIURL(sf.APIURL())), Service: svc,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	now := time.Now()
	inv := &flows.Invitation{ID: "inv_1", State: flows.StateAccepted, Inviter: flows.Inviter{TeamID: "T1", UserID: "UANN"},
		Request:  flows.Request{Email: "bob@fabrikam.com", DisplayName: "Bob"},
		Tracking: flows.Tracking{External: flows.ExternalAccepted, AcceptedAt: now}, InvitedAt: now.Add(-time.Hour)}
	accepted := flows.Notice{Kind: flows.NoticeAccepted, Invitation: inv, ID: "inv_1/accepted/1"}
	dms := func() (n int) {
		for _, m := range sf.Messages() {
			if m.Channel == slackfake.DMChannel("UANN") {
				n++
			}
		}
		return n
	}
	if _, err := b.Notify(t.Context(), accepted); err != nil {
		t.Fatal(err)
	}
	if n := dms(); n != 1 {
		t.Fatalf("%d DMs, want 1", n)
	}
	if m := sf.Messages()[0]; string(m.Metadata) != `{"event_type":"invitebot_notice","event_payload":{"notice_id":"inv_1/accepted/1"}}` {
		t.Errorf("metadata = %s", m.Metadata)
	}
	history := func() int { return len(sf.Calls("conversations.history")) }
	if history() != 0 {
		t.Error("a first delivery searched the history")
	}

	accepted.Recover = true // a restart: was it posted?
	if _, err := b.Notify(t.Context(), accepted); err != nil {
		t.Fatal(err)
	}
	if n := dms(); n != 1 || history() != 1 {
		t.Fatalf("recovered notice already in the DM: %d DMs, %d history calls; want 1 and 1", n, history())
	}

	other := flows.Notice{Kind: flows.NoticeAccepted, Invitation: inv, ID: "inv_1/accepted/2", Recover: true}
	if _, err := b.Notify(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	if n := dms(); n != 2 {
		t.Fatalf("recovered notice not in the DM: %d DMs, want 2", n)
	}

	sf.Fail("conversations.history", 1, slackfake.Fault{Error: "missing_scope"}) // installed before im:history
	third := flows.Notice{Kind: flows.NoticeAccepted, Invitation: inv, ID: "inv_1/accepted/3", Recover: true}
	if _, err := b.Notify(t.Context(), third); err != nil {
		t.Fatal(err)
	}
	if n := dms(); n != 3 {
		t.Fatalf("history unreadable: %d DMs, want 3 (posted rather than lost)", n)
	}
}

package main

// End-to-end tests of /invite-guest audit: the audit log as a CSV file in
// an admin's DM, uploaded with Slack's files upload v2.

import (
	"bytes"
	"encoding/csv"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// auditCommand runs "/invite-guest <text>" as user and returns the
// ephemeral answer's text.
func (h *harness) auditCommand(t *testing.T, user, text string) string {
	t.Helper()
	r, view, err := h.player.Command(h.ctx, user, bot.Command, text)
	if err != nil || r.Status != http.StatusOK || view != "" {
		t.Fatalf("/invite-guest %s: %v %d %s (view %q)", text, err, r.Status, r.Body, view)
	}
	ack := r.JSON()
	if ack["response_type"] != "ephemeral" {
		t.Fatalf("/invite-guest %s answered %s, want an ephemeral message", text, r.Body)
	}
	s, _ := ack["text"].(string)
	return s
}

func TestE2EAuditExport(t *testing.T) { bothTransports(t, testAuditExport) }

func testAuditExport(t *testing.T, h *harness) {
	view := h.open(t, "")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob Smith", "slack_link", emuPortal))
	h.waitDM(t, 1)
	inv := h.invitation(t)

	// A non-admin is refused, and nothing is uploaded.
	if got := h.auditCommand(t, ann, "audit 7"); !strings.Contains(got, "Only invitebot admins") {
		t.Errorf("non-admin: %q", got)
	}
	// A bad days argument is refused, naming it.
	if got := h.auditCommand(t, emuAdmin, "audit 10000"); !strings.Contains(got, "days") || !strings.Contains(got, "10000") {
		t.Errorf("bad days: %q", got)
	}
	if n := len(h.slack.Calls("files.getUploadURLExternal")); n != 0 {
		t.Errorf("%d uploads after refusals", n)
	}

	// An admin gets the log as a CSV file in their DM.
	if got := h.auditCommand(t, emuAdmin, "audit 7"); got != "Preparing the audit log for the last 7 days; it will arrive in your DM with invitebot." {
		t.Errorf("ack = %q", got)
	}
	if err := h.slack.WaitFor(h.ctx, func() bool { return len(h.slack.Files()) == 1 }); err != nil {
		t.Fatalf("no audit file: %v (log: %s)", err, h.logs.String())
	}
	f := h.slack.Files()[0]
	if f.Channel != slackfake.DMChannel(emuAdmin) || !strings.HasSuffix(f.Name, ".csv") {
		t.Errorf("file %q shared to %q, want a .csv in %s", f.Name, f.Channel, slackfake.DMChannel(emuAdmin))
	}
	rows, err := csv.NewReader(bytes.NewReader(f.Content)).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("not a CSV with events (%v):\n%s", err, f.Content)
	}
	if want := []string{"time", "invitation_id", "object_id", "actor", "action", "detail"}; !slices.Equal(rows[0], want) {
		t.Errorf("header = %q, want %q", rows[0], want)
	}
	var actions []string
	for _, r := range rows[1:] {
		if r[1] == inv.ID {
			actions = append(actions, r[4])
		}
	}
	var want []string
	for _, ev := range inv.History {
		want = append(want, ev.Action)
	}
	if !slices.Equal(actions, want) {
		t.Errorf("the CSV's events of %s = %q, want its history %q", inv.ID, actions, want)
	}
	if !strings.Contains(f.Comment, "last 7 days") {
		t.Errorf("comment = %q", f.Comment)
	}
	// The redeem link never leaves the inviter's DM.
	if inv.RedeemURL == "" || bytes.Contains(f.Content, []byte(inv.RedeemURL)) || bytes.Contains(f.Content, []byte("redeem")) {
		t.Errorf("the audit file contains the redeem link:\n%s", f.Content)
	}
}

package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// Requests for another workspace or another app (a shared signing secret,
// or a replay from elsewhere) are refused once invitebot knows who it is;
// unknown callback IDs change nothing.
func TestE2EForeignAndUnknownRequests(t *testing.T) {
	h := start(t)
	// The identity is in force once invitebot logs it (after bots.info).
	if err := poll(h.ctx, func() bool { return strings.Contains(h.logs.String(), `"msg":"slack identity"`) }); err != nil {
		t.Fatal("invitebot never read its Slack identity")
	}
	h.app.svc.Wait()
	other := *h.player
	other.Team = "T0ELSEWHERE"
	r, view, err := other.Command(h.ctx, ann, bot.Command, "")
	if err != nil || view != "" || !strings.Contains(string(r.Body), "not installed for this workspace") {
		t.Errorf("a command for another workspace: %v, view %q, %s", err, view, r.Body)
	}
	// A submission for another app, and one with an unknown callback ID.
	view = h.open(t, "")
	for _, payload := range []map[string]any{
		{"type": "view_submission", "team": map[string]any{"id": emuTeam}, "user": map[string]any{"id": ann, "team_id": emuTeam},
			"api_app_id": "A0SOMEOTHERAPP", "view": map[string]any{"id": view, "callback_id": bot.CallbackInvite,
				"state": map[string]any{"values": inviteValues("bob@fabrikam.com", "Bob", "slack_link")}}},
		{"type": "view_submission", "team": map[string]any{"id": emuTeam}, "user": map[string]any{"id": ann, "team_id": emuTeam},
			"api_app_id": slackfake.AppID, "view": map[string]any{"id": view, "callback_id": "no_such_dialog",
				"state": map[string]any{"values": inviteValues("bob@fabrikam.com", "Bob", "slack_link")}}},
	} {
		r, err := h.player.Interact(h.ctx, payload)
		if err != nil || r.Status != http.StatusOK || len(strings.TrimSpace(string(r.Body))) != 0 {
			t.Errorf("payload %v: %v %d %s, want an empty 200", payload["api_app_id"], err, r.Status, r.Body)
		}
	}
	h.app.svc.Wait()
	if invs, _ := h.app.db.Invitations(h.ctx, flows.InvitationFilter{}); len(invs) != 0 || len(h.tenant.Invitations()) != 0 {
		t.Errorf("foreign or unknown submissions recorded %d invitations, sent %d", len(invs), len(h.tenant.Invitations()))
	}
	// The same dialog, for this app, still works.
	if ack := h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob", "slack_link")); ack["response_action"] != "update" {
		t.Errorf("the genuine submission: %v", ack)
	}
}

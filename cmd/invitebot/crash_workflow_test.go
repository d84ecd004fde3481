package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// A workflow step completes exactly once however the bot is killed after
// it acknowledged the event: before the invitation reached Entra, after the
// guest was provisioned but before the completion reached Slack, and after
// Slack took the completion but before the bot heard so.
func TestCrashWorkflowStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	completions := 0
	for _, c := range []struct {
		name, email string
		trap        *trap
	}{
		{"after the ack", "a@fabrikam.com", &trap{key: "POST /invitations", n: 1}},
		{"before the completion", "b@fabrikam.com", &trap{key: "functions.completeSuccess", n: 1}},
		{"completion answer lost", "c@fabrikam.com", &trap{key: "functions.completeSuccess", n: 1, after: true}},
	} {
		// A rig of its own per case: a completion an earlier case's
		// graceful stop cut short is sent again at the next start (and
		// answered "already completed"), and would spring this case's
		// trap.
		r := newCrashRig(t)
		if err := defineSteps(r.slack); err != nil {
			t.Fatal(err)
		}
		r.start()
		r.healthy(ctx)
		r.hub.arm(c.trap)
		x, resp, err := r.player.FunctionExecuted(ctx, bot.FunctionInvite, map[string]any{
			bot.StepRequester: slackfake.UserContext(ann), bot.StepEmail: c.email, bot.StepGroups: emuPortal})
		if err != nil || resp.Status != http.StatusOK {
			t.Fatalf("%s: function_executed: %v %d %s", c.name, err, resp.Status, resp.Body)
		}
		select {
		case <-c.trap.fired:
		case <-ctx.Done():
			t.Fatalf("%s: the kill point was never reached; log tail:\n%s", c.name, tail(r.logs.String(), 3000))
		}
		r.kill()
		if n := len(r.slack.Completions(x.ID)); c.trap.after != (n == 1) || n > 1 {
			t.Fatalf("%s: %d completions at the kill", c.name, n)
		}
		r.start()
		r.healthy(ctx)
		if err := poll(ctx, func() bool { return len(r.slack.Completions(x.ID)) > 0 }); err != nil {
			t.Fatalf("%s: never completed after the restart: %v; log tail:\n%s", c.name, err, tail(r.logs.String(), 3000))
		}
		r.stop(ctx)
		cs := r.slack.Completions(x.ID)
		recs, _ := r.records(ctx)
		inv := recs[c.email]
		if len(cs) != 1 || !cs[0].Success || cs[0].Outputs[bot.StepObjectID] != inv.ObjectID || inv.ObjectID == "" || inv.State != flows.StateNotified {
			t.Errorf("%s: completions %+v, record %s %s", c.name, cs, inv.State, inv.ObjectID)
		}
		posted := 0
		for _, i := range r.tenant.Invitations() {
			if i.Body["invitedUserEmailAddress"] == c.email {
				posted++
			}
		}
		if posted != 1 {
			t.Errorf("%s: %d invitations reached Entra", c.name, posted)
		}
		completions += len(r.slack.Completions(""))
	}
	if completions != 3 {
		t.Errorf("%d completions in all, want 3", completions)
	}
}

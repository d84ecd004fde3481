package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// Ensure a SIGKILL right after Slack took an acceptance DM (before the bot
// recorded it) does not make the restarted bot send it again: it finds the
// DM by the notice ID in its metadata.
func TestCrashAfterAcceptanceDMNotRepeated(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	r := newCrashRig(t)
	const email = "bob@fabrikam.com"
	acceptDMs := func() int {
		n := 0
		for _, m := range r.slack.Messages() {
			if m.Channel == slackfake.DMChannel(ann) && strings.Contains(m.Text, "accepted your invitation") {
				n++
			}
		}
		return n
	}

	r.start()
	r.healthy(ctx)
	resp, view, err := r.player.Command(ctx, ann, bot.Command, email)
	if err != nil || resp.Status != http.StatusOK || view == "" {
		t.Fatalf("command: %v %d %s", err, resp.Status, resp.Body)
	}
	if resp, err = r.player.Submit(ctx, ann, view, inviteValues(email, "Bob", "slack_link", emuPortal)); err != nil || resp.Status != http.StatusOK {
		t.Fatalf("submit: %v %d %s", err, resp.Status, resp.Body)
	}
	if err := poll(ctx, func() bool { return r.outcomeDMs()[email] == 1 }); err != nil {
		t.Fatalf("no outcome DM: %v", err)
	}
	r.stop(ctx)
	recs, _ := r.records(ctx)
	inv := recs[email]
	if inv == nil || inv.ObjectID == "" {
		t.Fatalf("record %+v, want an invited guest", inv)
	}
	r.tenant.Redeem(inv.ObjectID)

	// The restarted bot's tracker sees the acceptance and DMs Ann; Slack
	// takes the DM, and the bot dies before it hears back.
	tr := &trap{key: "chat.postMessage", n: 1, after: true}
	r.hub.arm(tr)
	r.start()
	select {
	case <-tr.fired:
	case <-ctx.Done():
		t.Fatalf("no acceptance DM; log tail:\n%s", tail(r.logs.String(), 3000))
	}
	r.kill()
	if n := acceptDMs(); n != 1 {
		t.Fatalf("%d acceptance DMs before the restart, want 1", n)
	}
	recs, _ = r.records(ctx)
	if got := recs[email]; got.State != flows.StateAccepted || len(got.Outbox) != 1 {
		t.Fatalf("after the kill: state %s, outbox %+v; want accepted with the DM not yet recorded", got.State, got.Outbox)
	}

	history := len(r.slack.Calls("conversations.history"))
	r.start()
	err = poll(ctx, func() bool {
		return strings.Contains(r.logs.String(), "notice already posted; not posting it again") || acceptDMs() > 1
	})
	if err != nil {
		t.Fatalf("the restarted bot neither found nor re-sent the DM: %v; log tail:\n%s", err, tail(r.logs.String(), 3000))
	}
	r.stop(ctx)
	if n := acceptDMs(); n != 1 {
		t.Errorf("%d acceptance DMs, want 1", n)
	}
	if n := len(r.slack.Calls("conversations.history")) - history; n < 1 {
		t.Errorf("%d conversations.history calls after the restart, want at least 1", n)
	}
}

package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
)

// SIGTERM while an invitation's POST /invitations is in flight and Graph
// never answers: invitebot stops accepting, waits for the call for the
// stop grace (flows.DefaultStopGrace), then abandons it, leaves the
// record checkpointed in its last state, closes bbolt cleanly and exits 0;
// the next start finishes the invitation (one guest, one outcome DM).
func TestGracefulShutdownMidFlow(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	r := newCrashRig(t)
	inviteHeld(ctx, r, &trap{key: "POST /invitations", n: 1})
	began := time.Now()
	r.stop(ctx) // SIGTERM; fails the test unless it exits 0
	t.Logf("stopped %s after SIGTERM", time.Since(began).Round(time.Millisecond))
	recs, _ := r.records(ctx) // the lock is released and the file checks clean
	if rec := recs["bob@fabrikam.com"]; rec == nil || rec.State != flows.StateInviting {
		t.Fatalf("record after SIGTERM = %+v, want checkpointed in inviting", rec)
	}
	r.start()
	r.healthy(ctx)
	if err := poll(ctx, func() bool { return r.outcomeDMs()["bob@fabrikam.com"] > 0 }); err != nil {
		t.Fatalf("no outcome DM after the restart: %v", err)
	}
	// The DM goes out just before the record says notified: wait for the
	// Home tab to show the invitation pending (read from the record).
	for {
		n := len(r.slack.Calls("views.publish"))
		if _, err := r.player.OpenHome(ctx, ann); err != nil {
			t.Fatal(err)
		}
		if err := poll(ctx, func() bool { return len(r.slack.Calls("views.publish")) > n }); err != nil {
			t.Fatalf("Home not published: %v", err)
		}
		if v, _ := r.slack.HomeView(ann); strings.Contains(renderView(v), "(bob@fabrikam.com)\nPending for") {
			break
		}
	}
	r.stop(ctx)
	recs, _ = r.records(ctx)
	if rec := recs["bob@fabrikam.com"]; rec.State != flows.StateNotified {
		t.Errorf("record after the restart = %s (%+v), want notified; log tail:\n%s", rec.State, rec.Failure, tail(r.logs.String(), 3000))
	}
	n := 0
	for _, u := range r.tenant.Users() {
		if u.Mail == "bob@fabrikam.com" {
			n++
		}
	}
	if n != 1 || r.outcomeDMs()["bob@fabrikam.com"] != 1 {
		t.Errorf("%d guests and %d outcome DMs, want 1 and 1", n, r.outcomeDMs()["bob@fabrikam.com"])
	}
}

// SIGTERM while an invitation's POST /invitations is in flight and Graph
// answers during the stop: the call finishes, its result is recorded (the
// invitation stops after that step), invitebot exits 0, and the next start
// goes on from there: one POST /invitations, one guest, one outcome DM.
// Cutting the call off instead would make the resumed invitation POST
// again (a new redeem link; with Microsoft's email, a lookup first).
func TestGracefulShutdownFinishesCallInFlight(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	r := newCrashRig(t)
	tr := &trap{key: "POST /invitations", n: 1, release: make(chan struct{})}
	inviteHeld(ctx, r, tr)
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, func() bool { return strings.Contains(r.logs.String(), "stopping: invitations in progress stop") }); err != nil {
		t.Fatalf("the child did not start stopping: %v", err)
	}
	close(tr.release) // Graph answers while the runs are stopping
	r.stop(ctx)       // already signalled: waits for exit 0
	recs, _ := r.records(ctx)
	if rec := recs["bob@fabrikam.com"]; rec == nil || rec.State != flows.StateInvited || rec.ObjectID == "" {
		t.Fatalf("record after SIGTERM = %+v, want invited with the guest's object ID (the POST's result recorded)", rec)
	}
	r.start()
	r.healthy(ctx)
	if err := poll(ctx, func() bool { return r.outcomeDMs()["bob@fabrikam.com"] > 0 }); err != nil {
		t.Fatalf("no outcome DM after the restart: %v", err)
	}
	r.stop(ctx)
	n := 0
	for _, k := range r.hub.keysSince(0) {
		if k == "POST /invitations" {
			n++
		}
	}
	if n != 1 || len(r.tenant.Invitations()) != 1 {
		t.Errorf("%d POST /invitations (%d reached Entra), want 1", n, len(r.tenant.Invitations()))
	}
	if got := r.outcomeDMs()["bob@fabrikam.com"]; got != 1 {
		t.Errorf("%d outcome DMs, want 1", got)
	}
}

// inviteHeld starts r's child, arms tr and has Ann invite bob@fabrikam.com,
// returning once tr holds the request.
func inviteHeld(ctx context.Context, r *crashRig, tr *trap) {
	r.t.Helper()
	r.start()
	r.healthy(ctx)
	r.hub.arm(tr)
	_, view, err := r.player.Command(ctx, ann, bot.Command, "")
	if err != nil || view == "" {
		r.t.Fatalf("command: %v", err)
	}
	if _, err := r.player.Submit(ctx, ann, view, inviteValues("bob@fabrikam.com", "Bob", "slack_link", emuPortal)); err != nil {
		r.t.Fatal(err)
	}
	select {
	case <-tr.fired:
	case <-ctx.Done():
		r.t.Fatalf("the invitation never reached %s", tr.key)
	}
}

package main

// One effect for what Slack delivers to two replicas: a button pressed on
// both at once, an approval decided on both, and a bulk file's event
// delivered to both (Slack redelivering it to the other replica behind a
// load balancer).

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// playerFor is the rig's Slack player aimed at replica rp.
func (r *replicaRig) playerFor(rp *replica) *slackfake.Player {
	p := *r.player
	p.BotURL = "http://" + rp.addr
	return &p
}

// setPolicy replaces the policy file the replicas read at start.
func (r *replicaRig) setPolicy(yaml string) {
	r.t.Helper()
	for _, kv := range r.env {
		if path, ok := strings.CutPrefix(kv, "INVITEBOT_CONFIG="); ok {
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				r.t.Fatal(err)
			}
			return
		}
	}
	r.t.Fatal("the rig has no INVITEBOT_CONFIG")
}

// dmsTo is the bot's messages in user's DM, latest versions.
func (r *replicaRig) dmsTo(user string) []slackfake.Message { return dmsIn(r.slack, user) }

func (r *replicaRig) countDMs(user, text string) int {
	n := 0
	for _, m := range r.dmsTo(user) {
		if strings.Contains(m.Text, text) {
			n++
		}
	}
	return n
}

// both runs press against a and b at once and checks Slack got 200s.
func (r *replicaRig) both(a, b *replica, press func(p *slackfake.Player) (slackfake.Response, error)) {
	r.t.Helper()
	var wg sync.WaitGroup
	for _, rp := range []*replica{a, b} {
		wg.Go(func() {
			resp, err := press(r.playerFor(rp))
			if err != nil || resp.Status != http.StatusOK {
				r.t.Errorf("%s answered %d, %v; want 200", rp.name, resp.Status, err)
			}
		})
	}
	wg.Wait()
}

func TestReplicasOneEffect(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	r := newReplicaRig(t)
	r.slack.AddUser(approverA, "approver.a@contoso.com", "Approver A")
	r.setPolicy(`admins: [` + emuAdmin + `]
groups:
  - {name: Partner portal users, id: ` + emuPortal + `}
domains:
  default: approve
  rules:
    - {domain: fabrikam.com, action: auto_approve}
    - {domain: northwind.com, action: auto_approve}
approvals:
  approvers: [` + approverA + `]
`)
	for _, kv := range r.env { // the replicas reach Slack, and its files, through the rig's proxy
		if api, ok := strings.CutPrefix(kv, "SLACK_API_URL="); ok {
			r.slack.SetFileURLBase(api)
		}
	}
	a, b := r.leaderAndFollower(ctx)
	const bob = "bob@fabrikam.com"
	sub := r.submission(ann, r.openDialog(ctx, a, bob), inviteValues(bob, "Bob", "slack_link", emuPortal))
	if st, err := sub.deliver(ctx, a); err != nil || st != http.StatusOK {
		t.Fatalf("submission: %d %v", st, err)
	}
	if err := poll(ctx, func() bool { return r.outcomeDMs()[bob] == 1 && r.count("POST /users/{id}/sponsors") == 1 }); err != nil {
		t.Fatalf("bob's invitation did not finish: %v", err)
	}

	t.Run("resend pressed on both replicas", func(t *testing.T) {
		var outcome slackfake.Message
		for _, m := range r.dmsTo(ann) {
			if strings.HasPrefix(m.Text, "Invited "+bob) {
				outcome = m
			}
		}
		before := r.count("POST /invitations")
		// Graph is slow: the second press lands while the first one's
		// re-invitation runs, whichever replica it reached.
		r.tenant.SetLatency(graphfake.RoutePostInvitations, time.Second)
		r.both(a, b, func(p *slackfake.Player) (slackfake.Response, error) {
			return p.Press(ctx, ann, slackfake.MessageContainer(outcome), bot.ActionResend, "", "")
		})
		if err := poll(ctx, func() bool { return r.countDMs(ann, "Invitation sent again") >= 1 }); err != nil {
			t.Fatalf("no resend DM: %v", err)
		}
		r.tenant.SetLatency(graphfake.RoutePostInvitations, 0)
		if n := r.count("POST /invitations") - before; n != 1 {
			t.Errorf("%d re-invitations, want 1", n)
		}
	})

	t.Run("approval decided on both replicas", func(t *testing.T) {
		const carol = "carol@unknown.org"
		v := inviteValues(carol, "Carol", "slack_link", emuPortal)
		v[bot.BlockJustification] = map[string]any{bot.BlockJustification: slackfake.Text("Carol audits our books.")}
		sub := r.submission(ann, r.openDialog(ctx, b, carol), v)
		if st, err := sub.deliver(ctx, b); err != nil || st != http.StatusOK {
			t.Fatalf("submission: %d %v", st, err)
		}
		var req slackfake.Message
		if err := poll(ctx, func() bool {
			for _, m := range r.dmsTo(approverA) {
				if strings.Contains(string(m.Blocks), bot.ActionApprove) {
					req = m
					return true
				}
			}
			return false
		}); err != nil {
			t.Fatalf("no approval request: %v", err)
		}
		before := r.count("POST /invitations")
		r.both(a, b, func(p *slackfake.Player) (slackfake.Response, error) {
			return p.Press(ctx, approverA, slackfake.MessageContainer(req), bot.ActionApprove, "", "")
		})
		if err := poll(ctx, func() bool {
			return r.outcomeDMs()[carol] == 1 && r.countDMs(ann, "approved your invitation") >= 1
		}); err != nil {
			t.Fatalf("carol's invitation did not finish: %v", err)
		}
		if n := r.count("POST /invitations") - before; n != 1 {
			t.Errorf("%d invitations after two approvals, want 1", n)
		}
		if n := r.countDMs(ann, "approved your invitation"); n != 1 {
			var texts []string
			for _, m := range r.dmsTo(ann) {
				texts = append(texts, m.Text)
			}
			t.Errorf("Ann was told of the approval %d times, want 1; her DMs: %q", n, texts)
		}
	})

	t.Run("bulk file event delivered to both replicas", func(t *testing.T) {
		const dan, eve = "dan@fabrikam.com", "eve@northwind.com"
		file := r.slack.ShareFile(ann, slackfake.DMChannel(ann), "guests.csv",
			[]byte("email,display name\n"+dan+",Dan\n"+eve+",Eve\n"))
		pa := r.playerFor(a)
		cb := pa.EventCallback(map[string]any{"type": "file_shared", "channel_id": slackfake.DMChannel(ann), "file_id": file,
			"user_id": ann, "file": map[string]any{"id": file}, "event_ts": "1700000000.000100"})
		before := r.count("POST /invitations")
		var wg sync.WaitGroup
		for i, rp := range []*replica{a, b} {
			wg.Go(func() { // the second is Slack's retry, with the same event_id
				resp, err := r.playerFor(rp).SendEvent(ctx, cb, i, "http_timeout")
				if err != nil || resp.Status != http.StatusOK {
					t.Errorf("%s answered the event with %d, %v", rp.name, resp.Status, err)
				}
			})
		}
		wg.Wait()
		// One replica runs the file; the other says it runs elsewhere.
		if err := poll(ctx, func() bool {
			return strings.Contains(a.logs.String()+b.logs.String(), "bulk: the file runs on another replica")
		}); err != nil {
			t.Fatalf("no replica deferred the file to the other: %v; logs:\nA: %s\nB: %s", err, tail(a.logs.String(), 6000), tail(b.logs.String(), 6000))
		}
		var results int
		if err := poll(ctx, func() bool {
			results = 0
			for _, f := range r.slack.Files() {
				if f.User == slackfake.BotUserID && f.Channel == slackfake.DMChannel(ann) {
					results++
				}
			}
			return results >= 1
		}); err != nil {
			t.Fatalf("no results file: %v; logs:\nA: %s\nB: %s", err, tail(a.logs.String(), 6000), tail(b.logs.String(), 6000))
		}
		if results != 1 {
			t.Errorf("%d results files, want 1", results)
		}
		if n := r.count("POST /invitations") - before; n != 2 {
			t.Errorf("%d invitations for a file of two rows, want 2", n)
		}
	})

	r.stop(ctx, a)
	r.stop(ctx, b)
	r.hub.drain()
	if n := r.outcomeDMs()[bob]; n != 1 {
		t.Errorf("%d outcome DMs for bob, want 1", n)
	}
	if n := r.countDMs(ann, "Invitation sent again"); n != 1 {
		t.Errorf("%d resend DMs, want 1", n)
	}
}

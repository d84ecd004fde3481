package main

// More two-replica tests on one PostgreSQL (the rig of
// replicas_e2e_test.go): acceptance tracking runs on the leader only, with
// ⌈N/20⌉ Graph batches per cycle; a leader killed with an acceptance DM
// in flight leaves it to the next leader, which sends it once; a rolling
// restart loses and repeats nothing.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
)

// trackedEnv makes a replica track acceptance every 10 s (the least
// INVITEBOT_POLL_INTERVAL allowed) and log every tracking cycle (a cycle
// that changed nothing is logged at debug level).
var trackedEnv = []string{"INVITEBOT_POLL_INTERVAL=10s", "LOG_LEVEL=debug"}

// guestDisplayName is the display name given to the guest at email.
func guestDisplayName(email string) string {
	local, _, _ := strings.Cut(email, "@")
	return "Guest " + strings.TrimPrefix(local, "guest")
}

// invite opens user's dialog on rp and submits an invitation of email
// (Slack link delivery, the portal group) to rp; it returns the
// submission's error, for any goroutine.
func (r *replicaRig) invite(ctx context.Context, rp *replica, user, email string) error {
	view, err := r.dialog(ctx, rp, user, email)
	if err != nil {
		return err
	}
	sub, err := r.signedSubmission(user, view, inviteValues(email, guestDisplayName(email), "slack_link", emuPortal))
	if err != nil {
		return err
	}
	if st, err := sub.deliver(ctx, rp); err != nil || st != http.StatusOK {
		return fmt.Errorf("submission of %s to %s: %d %v", email, rp.name, st, err)
	}
	return nil
}

// inviters adds n Slack users with internal accounts, who may invite.
func (r *replicaRig) inviters(n int) []string {
	for i := len(r.invs); i < n; i++ {
		id, email := fmt.Sprintf("U0INV%d", i), fmt.Sprintf("inviter%d@contoso.com", i)
		r.invs = append(r.invs, id)
		r.slack.AddUser(id, email, fmt.Sprintf("Inviter %d", i))
		r.tenant.AddUser(graphfake.User{DisplayName: fmt.Sprintf("Inviter %d", i), Mail: email, UserPrincipalName: email,
			UserType: "Member", AccountEnabled: true})
	}
	return r.invs[:n]
}

// inviteAll invites n guests through rp, eight at a time by eight
// inviters (the bot posts at most one message every 1.1 s into a DM, as
// Slack asks), and waits until each is done (notified, sponsor recorded):
// n invitations pending acceptance.
func (r *replicaRig) inviteAll(ctx context.Context, rp *replica, n int) []string {
	r.t.Helper()
	users := r.inviters(8)
	emails := make([]string, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		emails[i] = fmt.Sprintf("guest%02d@fabrikam.com", i)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = r.invite(ctx, rp, users[i%len(users)], emails[i])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		r.t.Fatal(err)
	}
	r.settled(ctx, emails, "invitations pending acceptance")
	return emails
}

// settled waits until the invitation of each address is finished: notified
// or accepted, its sponsor recorded and no notice left in its outbox.
func (r *replicaRig) settled(ctx context.Context, emails []string, what string) map[string]*flows.Invitation {
	r.t.Helper()
	var recs map[string]*flows.Invitation
	var left []string
	err := pollEvery(ctx, 50*time.Millisecond, func() bool {
		recs, left = r.records(ctx), nil
		for _, e := range emails {
			if inv := recs[e]; inv == nil || (inv.State != flows.StateNotified && inv.State != flows.StateAccepted) ||
				inv.SponsorDue || len(inv.Outbox) > 0 {
				left = append(left, e)
			}
		}
		return len(left) == 0
	})
	if err != nil {
		var states []string
		for _, e := range left {
			if inv := recs[e]; inv != nil {
				states = append(states, fmt.Sprintf("%s: %s (sponsor due %v, outbox %d)", e, inv.State, inv.SponsorDue, len(inv.Outbox)))
			} else {
				states = append(states, e+": no record")
			}
		}
		r.t.Fatalf("%s: %d of %d not finished: %v\n%s", what, len(left), len(emails), err, strings.Join(states, "\n"))
	}
	return recs
}

// pollEvery is poll for conditions that cost a store read.
func pollEvery(ctx context.Context, every time.Duration, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	return nil
}

// cycle is one "tracking cycle" log line.
type cycle struct{ Pending, Requests, Accepted int }

// cycles are the tracking cycles rp has logged.
func (rp *replica) cycles() []cycle {
	var out []cycle
	for line := range strings.Lines(rp.logs.String()) {
		if !strings.Contains(line, `"msg":"tracking cycle"`) {
			continue
		}
		var c cycle
		if err := json.Unmarshal([]byte(line), &c); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// Acceptance tracking runs on the leader only: with 41 invitations
// pending, each of its cycles reads them in ⌈41/20⌉ = 3 JSON batches,
// counted at the leader's own Graph endpoint between two consecutive
// "tracking cycle" lines, and the other replica sends none. A guest who
// accepts is announced once; the next cycle reads the 40 left in 2.
func TestReplicasTrackerOnOneReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	r := newReplicaRig(t)
	const n = 41
	// The invitations are made through a replica whose tracker (the
	// default interval, 5 min) ran once, before them; it stops before the
	// replicas under test start, so their first cycle sees all 41.
	began := time.Now()
	seeder := r.replica(ctx, "seeding replica")
	emails := r.inviteAll(ctx, seeder, n)
	r.stop(ctx, seeder)
	t.Logf("%d invitations made in %v", n, time.Since(began).Round(time.Millisecond))

	a := r.replica(ctx, "replica A", trackedEnv...)
	if err := poll(ctx, a.leading); err != nil {
		t.Fatalf("replica A did not take the lease: %v", err)
	}
	b := r.replica(ctx, "replica B", trackedEnv...)
	if err := poll(ctx, func() bool { return strings.Contains(b.logs.String(), "another replica runs the background work") }); err != nil {
		t.Fatalf("replica B did not find the lease held: %v; log tail:\n%s", err, tail(b.logs.String(), 2000))
	}
	const batch = "POST /$batch"
	// The batches of cycle k are counted once its line is logged: the
	// next cycle starts a poll interval later.
	batchesAt := func(k int) int {
		t.Helper()
		if err := poll(ctx, func() bool { return len(a.cycles()) >= k }); err != nil {
			t.Fatalf("replica A logged %d tracking cycles, want %d: %v; log tail:\n%s", len(a.cycles()), k, err, tail(a.logs.String(), 3000))
		}
		return a.graph.count(batch)
	}
	first := batchesAt(1)
	t.Logf("replica A's first cycle ended %v after the start", time.Since(began).Round(time.Millisecond))
	accepted := emails[17]
	r.tenant.Redeem(guestID(t, r, accepted))
	second := batchesAt(2)
	if err := poll(ctx, func() bool { return r.acceptDMs()[accepted] >= 1 }); err != nil {
		t.Fatalf("no acceptance DM: %v; log tail:\n%s", err, tail(a.logs.String(), 3000))
	}
	third := batchesAt(3)

	got := a.cycles()[:3]
	want := []cycle{{Pending: n, Requests: 3}, {Pending: n, Requests: 3, Accepted: 1}, {Pending: n - 1, Requests: 2}}
	if !slices.Equal(got, want) {
		t.Errorf("replica A's first tracking cycles %+v, want %+v", got, want)
	}
	if first < 3 || second-first != 3 || third-second != 2 {
		t.Errorf("replica A's Graph batches: %d by the end of cycle 1, then %d and %d; want at least 3, then 3 (⌈41/20⌉) and 2 (⌈40/20⌉)",
			first, second-first, third-second)
	}
	if c := b.cycles(); len(c) > 0 {
		t.Errorf("replica B ran %d tracking cycles, want none", len(c))
	}
	r.stop(ctx, a)
	r.stop(ctx, b)
	r.hub.drain()
	if n := b.graph.count(batch); n != 0 {
		t.Errorf("replica B sent %d Graph batches, want none", n)
	}
	if n := a.graph.count(batch); n != third {
		t.Errorf("replica A sent %d Graph batches in all, want %d (a fourth cycle?)", n, third)
	}
	dms := r.acceptDMs()
	if dms[accepted] != 1 || len(dms) != 1 {
		t.Errorf("acceptance DMs %v, want one, for %s", dms, accepted)
	}
}

// The leader is SIGKILLed after a guest accepted, while the acceptance DM
// is on its way: held before it reaches Slack, or taken by Slack with the
// answer lost. The other replica takes the lease and delivers the notice
// left in the outbox: one message with that notice's metadata either way
// (when Slack already has it, the new leader finds it in the DM's
// history and does not post it again).
func TestReplicasLeaderKilledWithAcceptancePending(t *testing.T) {
	for _, after := range []bool{false, true} {
		name := "DMHeld"
		if after {
			name = "DMTakenAnswerLost"
		}
		t.Run(name, func(t *testing.T) { testLeaderKilledWithAcceptance(t, after) })
	}
}

func testLeaderKilledWithAcceptance(t *testing.T, after bool) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	r := newReplicaRig(t)
	const email = "guest01@fabrikam.com"
	a := r.replica(ctx, "replica A", trackedEnv...)
	if err := poll(ctx, a.leading); err != nil {
		t.Fatalf("replica A did not take the lease: %v", err)
	}
	b := r.replica(ctx, "replica B", trackedEnv...)
	if err := poll(ctx, func() bool { return strings.Contains(b.logs.String(), "another replica runs the background work") }); err != nil {
		t.Fatalf("replica B did not find the lease held: %v", err)
	}
	// Invited through B: the invitation runs there; tracking runs on A.
	if err := r.invite(ctx, b, ann, email); err != nil {
		t.Fatal(err)
	}
	inv := r.settled(ctx, []string{email}, "the invitation")[email]

	tr := &trap{key: "chat.postMessage", n: 1, after: after}
	r.hub.arm(tr)
	r.tenant.Redeem(inv.ObjectID)
	select {
	case <-tr.fired:
	case <-ctx.Done():
		t.Fatalf("replica A posted no acceptance DM; log tail:\n%s", tail(a.logs.String(), 3000))
	}
	r.kill(a)
	if got := r.records(ctx)[email]; got.State != flows.StateAccepted || len(got.Outbox) != 1 || got.Outbox[0].Kind != flows.NoticeAccepted {
		t.Fatalf("after the kill: state %s, outbox %+v; want accepted with the acceptance notice not yet recorded as sent", got.State, got.Outbox)
	}
	want := 0
	if after {
		want = 1
	}
	if n := r.acceptDMs()[email]; n != want {
		t.Fatalf("%d acceptance DMs at the kill, want %d", n, want)
	}

	tctx, tcancel := context.WithTimeout(ctx, replicaTTL+replicaTTL/3+2*time.Second)
	err := poll(tctx, b.leading)
	tcancel()
	if err != nil {
		t.Fatalf("replica B did not take the lease within %v of the kill; log tail:\n%s", replicaTTL, tail(b.logs.String(), 2000))
	}
	// B's first cycle delivers the outboxes it finds.
	r.settled(ctx, []string{email}, "the acceptance notice")
	r.stop(ctx, b)
	r.hub.drain()
	if n := r.acceptDMs()[email]; n != 1 {
		t.Errorf("%d acceptance DMs, want 1", n)
	}
	carrying := 0
	for _, m := range r.slack.Messages() {
		var meta struct {
			EventType    string `json:"event_type"`
			EventPayload struct {
				NoticeID string `json:"notice_id"`
			} `json:"event_payload"`
		}
		if m.Metadata != nil && json.Unmarshal(m.Metadata, &meta) == nil && meta.EventType == bot.NoticeEventType &&
			strings.HasPrefix(meta.EventPayload.NoticeID, inv.ID+"/"+string(flows.NoticeAccepted)+"/") {
			carrying++
		}
	}
	if carrying != 1 {
		t.Errorf("%d messages carry the acceptance notice's ID, want 1", carrying)
	}
	found := strings.Contains(b.logs.String(), "notice already posted; not posting it again")
	if found != after {
		t.Errorf("replica B found the posted notice in the DM's history: %v, want %v; log tail:\n%s", found, after, tail(b.logs.String(), 3000))
	}
}

// rollingDriver keeps submissions arriving, each on one of the replicas
// currently taking traffic, as a load balancer in front of them would.
type rollingDriver struct {
	r *replicaRig

	mu       sync.Mutex
	targets  []*replica
	inflight map[*replica]int
	by       map[*replica][]string // the addresses each replica took
	emails   []string
	errs     []error
}

// route sets the replicas that take new submissions and waits until
// those sent elsewhere are answered.
func (d *rollingDriver) route(ctx context.Context, targets ...*replica) {
	d.r.t.Helper()
	d.mu.Lock()
	d.targets = targets
	d.mu.Unlock()
	err := poll(ctx, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		for rp, n := range d.inflight {
			if n > 0 && !slices.Contains(targets, rp) {
				return false
			}
		}
		return true
	})
	if err != nil {
		d.r.t.Fatalf("submissions still in flight: %v", err)
	}
}

// run submits invitations, one about every 200 ms, until ctx is done.
func (d *rollingDriver) run(ctx context.Context) {
	for i := 0; ctx.Err() == nil; i++ {
		d.mu.Lock()
		rp := d.targets[i%len(d.targets)]
		d.inflight[rp]++
		d.mu.Unlock()
		email := fmt.Sprintf("guest%02d@fabrikam.com", 50+i)
		err := d.r.invite(context.WithoutCancel(ctx), rp, ann, email)
		d.mu.Lock()
		d.inflight[rp]--
		d.emails = append(d.emails, email)
		d.by[rp] = append(d.by[rp], email)
		if err != nil {
			d.errs = append(d.errs, err)
		}
		d.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// took returns the addresses rp took.
func (d *rollingDriver) took(rp *replica) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.by[rp])
}

// pastInvite waits until the invitations of emails have recorded their
// POST /invitations (or finished): a SIGTERM then interrupts them at a
// later step. (A SIGTERM abandons a Graph call in flight; if Graph had
// performed a POST /invitations so abandoned, the resumed invitation
// sends it again, for the same guest.)
func (r *replicaRig) pastInvite(ctx context.Context, emails []string) {
	r.t.Helper()
	err := pollEvery(ctx, 20*time.Millisecond, func() bool {
		recs := r.records(ctx)
		for _, e := range emails {
			inv := recs[e]
			if inv == nil {
				return false
			}
			switch inv.State {
			case flows.StateRequested, flows.StateChecking, flows.StateInviting:
				return false
			}
		}
		return true
	})
	if err != nil {
		r.t.Fatalf("invitations not past POST /invitations: %v", err)
	}
}

// A rolling restart of two replicas: A, then B, are each stopped with
// SIGTERM and replaced (A' ready on /readyz before B stops) while
// submissions keep arriving at whichever replicas take traffic, the
// invitations of the replica being stopped are in progress (its group
// requests take 1.5 s), and guests accept invitations made before. B
// leads at first: the first SIGTERM stops a replica that does not lead,
// the second the leader. Afterwards every submission is one invitation,
// finished, with one POST /invitations and one outcome DM, and every
// acceptance one DM.
func TestReplicasRollingRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
	defer cancel()
	r := newReplicaRig(t)
	b := r.replica(ctx, "replica B", trackedEnv...)
	if err := poll(ctx, b.leading); err != nil {
		t.Fatalf("replica B did not take the lease: %v", err)
	}
	a := r.replica(ctx, "replica A", trackedEnv...)
	r.ready(ctx, a)
	r.ready(ctx, b)
	pending := r.inviteAll(ctx, a, 3) // guest00..02, to be accepted one by one
	r.tenant.SetLatency(graphfake.RouteAddMember, 1500*time.Millisecond)

	d := &rollingDriver{r: r, targets: []*replica{a, b}, inflight: map[*replica]int{}, by: map[*replica][]string{}}
	dctx, stopDriver := context.WithCancel(ctx)
	driven := make(chan struct{})
	go func() {
		defer close(driven)
		d.run(dctx)
	}()
	defer func() {
		stopDriver()
		<-driven
	}()
	// waitTook waits until rp has taken n more submissions.
	waitTook := func(rp *replica, n int) {
		t.Helper()
		had := len(d.took(rp))
		if err := poll(ctx, func() bool { return len(d.took(rp)) >= had+n }); err != nil {
			t.Fatalf("%s took no submissions: %v", rp.name, err)
		}
	}
	waitTook(a, 2)
	r.tenant.Redeem(guestID(t, r, pending[0]))

	// A: traffic moves to B, then SIGTERM with A's invitations in progress.
	d.route(ctx, b)
	r.pastInvite(ctx, d.took(a))
	inProgress := len(r.unfinished(ctx, d.took(a)))
	r.stop(ctx, a)
	t.Logf("replica A stopped with %d of its %d invitations in progress", inProgress, len(d.took(a)))
	a2 := r.replica(ctx, "replica A'", trackedEnv...)
	r.ready(ctx, a2)
	d.route(ctx, a2, b)
	r.tenant.Redeem(guestID(t, r, pending[1]))
	waitTook(a2, 2)
	waitTook(b, 2)

	// B, the leader: traffic moves to A', then SIGTERM; A' takes the lease.
	d.route(ctx, a2)
	r.pastInvite(ctx, d.took(b))
	inProgress = len(r.unfinished(ctx, d.took(b)))
	r.stop(ctx, b)
	t.Logf("replica B stopped with %d of its %d invitations in progress", inProgress, len(d.took(b)))
	b2 := r.replica(ctx, "replica B'", trackedEnv...)
	r.ready(ctx, b2)
	d.route(ctx, a2, b2)
	r.tenant.Redeem(guestID(t, r, pending[2]))
	waitTook(b2, 2)
	waitTook(a2, 1)
	stopDriver()
	<-driven

	if len(d.errs) > 0 {
		t.Errorf("submissions failed: %v", errors.Join(d.errs...))
	}
	if !a2.leading() {
		t.Errorf("replica A' did not take the lease after B stopped; log tail:\n%s", tail(a2.logs.String(), 2000))
	}
	all := append(slices.Clone(pending), d.emails...)
	recs := r.settled(ctx, all, "after the rolling restart")
	r.stop(ctx, a2)
	r.stop(ctx, b2)
	r.hub.drain()

	t.Logf("%d submissions during the restart", len(d.emails))
	if n := r.count("POST /invitations"); n != len(all) {
		t.Errorf("%d POST /invitations for %d submissions, want one each", n, len(all))
	}
	guests := map[string]int{}
	for _, u := range r.tenant.Users() {
		guests[u.Mail]++
	}
	outcome, accepted := r.outcomeDMsToAll(), r.acceptDMs()
	for _, e := range all {
		want := flows.StateNotified
		if slices.Contains(pending, e) {
			want = flows.StateAccepted
		}
		if inv := recs[e]; inv.State != want {
			t.Errorf("%s: %s, want %s", e, inv.State, want)
		}
		if guests[e] != 1 || outcome[e] != 1 {
			t.Errorf("%s: %d guests and %d outcome DMs, want 1 and 1", e, guests[e], outcome[e])
		}
		wantAccepted := 0
		if want == flows.StateAccepted {
			wantAccepted = 1
		}
		if accepted[e] != wantAccepted {
			t.Errorf("%s: %d acceptance DMs, want %d", e, accepted[e], wantAccepted)
		}
	}
}

// unfinished returns those of emails whose invitation is not yet notified.
func (r *replicaRig) unfinished(ctx context.Context, emails []string) []string {
	recs := r.records(ctx)
	return slices.DeleteFunc(slices.Clone(emails), func(e string) bool {
		inv := recs[e]
		return inv != nil && inv.State.Terminal()
	})
}

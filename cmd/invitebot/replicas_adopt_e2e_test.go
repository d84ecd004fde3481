package main

// Which replica runs an invitation (flows/replica.go), with two `invitebot
// serve` processes on one PostgreSQL: the leader leaves alone an
// invitation a live replica runs, however long its Graph call takes, and
// adopts the invitation of a replica that was SIGKILLed without waiting
// for a change of leader.

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// leaderAndFollower starts replica A, waits until it leads, then replica
// B, and waits until B has seen the lease held.
func (r *replicaRig) leaderAndFollower(ctx context.Context) (a, b *replica) {
	r.t.Helper()
	a = r.replica(ctx, "replica A")
	if err := poll(ctx, a.leading); err != nil {
		r.t.Fatalf("replica A did not take the lease: %v", err)
	}
	b = r.replica(ctx, "replica B")
	if err := poll(ctx, func() bool { return strings.Contains(b.logs.String(), "another replica runs the background work") }); err != nil {
		r.t.Fatalf("replica B did not find the lease held: %v; log tail:\n%s", err, tail(b.logs.String(), 2000))
	}
	return a, b
}

// heldAtGroupStep arms a trap on the first group request (a hold until
// release is closed, if release is not nil; else a kill point), submits
// the dialog for email as Ann on rep, and waits until the invitation's
// group request reaches the trap.
func (r *replicaRig) heldAtGroupStep(ctx context.Context, rep *replica, email string, release chan struct{}) {
	r.t.Helper()
	tr := &trap{key: "POST /groups/{id}/members", n: 1, release: release}
	r.hub.arm(tr)
	sub := r.submission(ann, r.openDialog(ctx, rep, email), inviteValues(email, "Bob", "slack_link", emuPortal))
	if st, err := sub.deliver(ctx, rep); err != nil || st != http.StatusOK {
		r.t.Fatalf("submission: %d %v", st, err)
	}
	select {
	case <-tr.fired:
	case <-ctx.Done():
		r.t.Fatalf("the invitation never reached the group step; log tail:\n%s", tail(rep.logs.String(), 3000))
	}
}

// kill SIGKILLs rp, waits until it has exited, and returns when.
func (r *replicaRig) kill(rp *replica) time.Time {
	r.t.Helper()
	if err := rp.cmd.Process.Kill(); err != nil {
		r.t.Fatal(err)
	}
	<-rp.done
	return time.Now()
}

// The follower's invitation waits in its group request for more than two
// lease TTLs, during which the leader looks for orphaned invitations at
// least twice: it must leave the invitation to the live follower, which
// then finishes it alone.
func TestReplicasLeaderLeavesLiveFollowersInvitation(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	r := newReplicaRig(t)
	const email = "bob@fabrikam.com"
	a, b := r.leaderAndFollower(ctx)

	release := make(chan struct{})
	r.heldAtGroupStep(ctx, b, email, release)
	// The leader looks every TTL; the follower renews its liveness every
	// TTL/3. Two looks and a margin, counted by the clock, not asserted
	// on it: what is checked is what the leader did meanwhile.
	looks := time.After(2*replicaTTL + replicaTTL/2)
	select {
	case <-looks:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if n := r.count("POST /groups/{id}/members"); n != 1 {
		t.Fatalf("%d group requests while the follower's was held, want 1 (the leader must not run it too)", n)
	}
	close(release)
	if err := poll(ctx, func() bool {
		return r.outcomeDMs()[email] >= 1 && r.count("POST /users/{id}/sponsors") >= 1
	}); err != nil {
		t.Fatalf("the follower did not finish the invitation: %v; log tail:\n%s", err, tail(b.logs.String(), 3000))
	}
	r.stop(ctx, a)
	r.stop(ctx, b)
	r.hub.drain()
	if strings.Contains(a.logs.String(), "adopting the invitation") {
		t.Errorf("the leader adopted the live follower's invitation; log tail:\n%s", tail(a.logs.String(), 3000))
	}
	for key, want := range map[string]int{"POST /invitations": 1, "POST /groups/{id}/members": 1} {
		if n := r.count(key); n != want {
			t.Errorf("%d %s, want %d", n, key, want)
		}
	}
	if n := r.outcomeDMs()[email]; n != 1 {
		t.Errorf("%d outcome DMs, want 1", n)
	}
}

// The follower is SIGKILLed with its invitation's group request in flight
// (Entra has the guest): the leader, still leading, adopts the invitation
// once the follower's liveness lease lapses and finishes it, without
// inviting again or DMing twice.
func TestReplicasFollowerKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	r := newReplicaRig(t)
	const email = "bob@fabrikam.com"
	a, b := r.leaderAndFollower(ctx)

	r.heldAtGroupStep(ctx, b, email, nil)
	killed := r.kill(b)

	// B's liveness lease lapses at most a TTL after the kill, and A looks
	// every TTL: it adopts within about two TTLs.
	if err := poll(ctx, func() bool {
		return strings.Contains(a.logs.String(), "adopting the invitation of a replica that stopped")
	}); err != nil {
		t.Fatalf("replica A did not adopt B's invitation: %v; log tail:\n%s", err, tail(a.logs.String(), 3000))
	}
	t.Logf("replica A adopted B's invitation %v after the kill (TTL %v)", time.Since(killed).Round(time.Millisecond), replicaTTL)
	if err := poll(ctx, func() bool {
		return r.outcomeDMs()[email] >= 1 && r.count("POST /users/{id}/sponsors") >= 1
	}); err != nil {
		t.Fatalf("replica A did not finish the invitation: %v; log tail:\n%s", err, tail(a.logs.String(), 3000))
	}
	if !a.leading() || strings.Count(a.logs.String(), "leading: running the background work") != 1 {
		t.Errorf("the leader changed: the adoption must not need a change of leader")
	}
	r.stop(ctx, a)
	r.hub.drain()
	if n := r.count("POST /invitations"); n != 1 {
		t.Errorf("%d POST /invitations, want 1", n)
	}
	if n := r.count("POST /groups/{id}/members"); n != 2 { // B's, held, and A's
		t.Errorf("%d group requests, want 2 (the one held when B died, A's)", n)
	}
	if n := r.outcomeDMs()[email]; n != 1 {
		t.Errorf("%d outcome DMs, want 1", n)
	}
	if !slices.Contains(r.tenant.GroupMembers(emuPortal), guestID(t, r, email)) {
		t.Errorf("%s is not in the portal group", email)
	}
}

package flows_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

// replicas is two or more Services sharing one store (a Leaser), as
// replicas on PostgreSQL do, each with its own scripted directory so a
// test can tell which replica made a call. The store's lease clock is
// the wall clock plus what advance added.
type replicas struct {
	store  *flowstest.Store
	note   *flowstest.Notifier
	mu     sync.Mutex
	offset time.Duration
}

func newReplicas() *replicas {
	r := &replicas{store: flowstest.NewStore(), note: &flowstest.Notifier{}}
	r.store.Now = func() time.Time {
		r.mu.Lock()
		defer r.mu.Unlock()
		return time.Now().Add(r.offset)
	}
	return r
}

// advance moves the leases' clock forward.
func (r *replicas) advance(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.offset += d
}

// replica starts replica name (StartReplica only: tests call Resume or
// Background themselves) on its own directory.
func (r *replicas) replica(t *testing.T, name string, dir *flowstest.Directory, ttl time.Duration) *flows.Service {
	t.Helper()
	svc := flows.New(flows.Config{Directory: dir, Store: r.store, Notifier: r.note, PollInterval: -1,
		Replica: name, ReplicaTTL: ttl, StopGrace: -1, // the stops here cut calls off: TestStopGrace tests the grace
		Policy: flows.Policy{Groups: []flows.Group{{Name: "Portal", ID: "g1"}, {Name: "Wiki", ID: "g2"}},
			DefaultRedirectURL: "https://myapplications.microsoft.com"},
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	svc.StartReplica(t.Context())
	t.Cleanup(svc.Close)
	return svc
}

// held makes dir's FindUsers calls block until released, telling entered
// when one starts; the calls after the first n go through at once.
func held(dir *flowstest.Directory, n int) (entered chan struct{}, release chan struct{}) {
	entered, release = make(chan struct{}, n), make(chan struct{})
	var mu sync.Mutex
	calls := 0
	dir.FindUsersFunc = func(ctx context.Context, email string, withUPN bool) ([]flows.DirectoryUser, error) {
		mu.Lock()
		calls++
		hold := calls <= n
		mu.Unlock()
		if hold {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return nil, nil
	}
	return entered, release
}

func (r *replicas) invitation(t *testing.T, id string) *flows.Invitation {
	t.Helper()
	inv, err := r.store.Invitation(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// submit has svc take the usual request.
func submit(t *testing.T, svc *flows.Service) *flows.Invitation {
	t.Helper()
	inv, err := svc.Submit(t.Context(), "V1", inviter, request())
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

// finished checks that id was notified once and has no runner left, and
// that the leader (adir) and b (bdir) sent the POST /invitations wanted.
func (r *replicas) finished(t *testing.T, id string, adir, bdir *flowstest.Directory, wantLeader, wantB int) {
	t.Helper()
	got := r.invitation(t, id)
	if got.State != flows.StateNotified || got.Runner != "" {
		t.Fatalf("state %s, runner %q; want notified, no runner", got.State, got.Runner)
	}
	if na, nb := adir.Count("Invite"), bdir.Count("Invite"); na != wantLeader || nb != wantB {
		t.Fatalf("POST /invitations: leader %d, b %d; want %d and %d", na, nb, wantLeader, wantB)
	}
	if n := r.note.Count(flows.NoticeDone, id); n != 1 {
		t.Fatalf("%d done notices, want 1", n)
	}
}

// Ensure the leader leaves alone an invitation that another live replica
// runs: Resume starts nothing, and the replica finishes it alone.
func TestReplicaLeaderLeavesALiveReplicasRun(t *testing.T) {
	r := newReplicas()
	adir, bdir := flowstest.NewDirectory(), flowstest.NewDirectory()
	entered, release := held(bdir, 1)
	a := r.replica(t, "a", adir, time.Hour)
	b := r.replica(t, "b", bdir, time.Hour)

	inv := submit(t, b)
	<-entered // b runs it, inside its directory lookup
	if got := r.invitation(t, inv.ID).Runner; got != "b" {
		t.Fatalf("Runner = %q while b runs it, want b", got)
	}
	n, err := a.Resume(t.Context())
	if err != nil || n != 0 {
		t.Fatalf("leader's Resume = %d, %v; want 0 (b is alive and runs it)", n, err)
	}
	close(release)
	b.Wait()
	a.Wait()
	r.finished(t, inv.ID, adir, bdir, 0, 1)
}

// Ensure a replica whose liveness lease lapsed (it was paused or cut off
// longer than the TTL) has its invitation adopted by the leader, and that
// once it resumes its writes are fenced off: it stops before the
// invitation's next step, and only the adopter sends POST /invitations.
func TestReplicaAdoptedRunIsFenced(t *testing.T) {
	r := newReplicas()
	adir, bdir := flowstest.NewDirectory(), flowstest.NewDirectory()
	bentered, brelease := held(bdir, 1)
	aentered, arelease := held(adir, 1)
	a := r.replica(t, "a", adir, time.Hour)
	b := r.replica(t, "b", bdir, time.Hour)

	inv := submit(t, b)
	<-bentered
	r.advance(2 * time.Hour) // b's liveness lease lapses: it renews hourly
	n, err := a.Resume(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("leader's Resume = %d, %v; want 1 (b's lease lapsed)", n, err)
	}
	<-aentered // the leader runs it now, inside its own lookup
	if got := r.invitation(t, inv.ID).Runner; got != "a" {
		t.Fatalf("Runner = %q after the adoption, want a", got)
	}
	close(brelease) // b wakes up: its next write must be refused
	b.Wait()
	if got := r.invitation(t, inv.ID); got.State != flows.StateChecking || got.Runner != "a" {
		t.Fatalf("after b's stale step: state %s, runner %q; want checking, a (nothing written by b)", got.State, got.Runner)
	}
	close(arelease)
	a.Wait()
	r.finished(t, inv.ID, adir, bdir, 1, 0)
	if n := r.note.Count(flows.NoticeFailed, inv.ID); n != 0 {
		t.Fatalf("%d failure notices, want none (b was fenced, not failed)", n)
	}
}

// Ensure the leader's background work adopts, without a change of leader,
// the invitation of a replica that stopped (Close: its runs stop with
// their state recorded, its liveness lease is released).
func TestReplicaStoppedWorkAdoptedByLeader(t *testing.T) {
	r := newReplicas()
	adir, bdir := flowstest.NewDirectory(), flowstest.NewDirectory()
	bentered, _ := held(bdir, 1)
	ttl := 300 * time.Millisecond // the leader looks for orphans every ttl
	a := r.replica(t, "a", adir, ttl)
	b := r.replica(t, "b", bdir, ttl)

	lctx, stop := context.WithCancel(t.Context())
	led := make(chan error, 1)
	go func() { led <- a.Background(lctx) }()
	defer func() {
		stop()
		if err := <-led; err != nil {
			t.Errorf("Background: %v", err)
		}
	}()

	inv := submit(t, b)
	<-bentered
	b.Close() // the run stops in its lookup; the claim stays, the lease goes
	// (The leader may adopt it from here on: what b left is not checked.)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.note.WaitFor(ctx, func(ns []flows.Notice) bool {
		return slices.ContainsFunc(ns, func(n flows.Notice) bool { return n.Kind == flows.NoticeDone && n.Invitation.ID == inv.ID })
	}); err != nil {
		t.Fatalf("the leader did not finish b's invitation: %v", err)
	}
	a.Wait()
	if na := adir.Count("Invite"); na != 1 {
		t.Fatalf("leader's POST /invitations: %d, want 1", na)
	}
	if got := r.invitation(t, inv.ID); got.State != flows.StateNotified {
		t.Fatalf("state %s, want notified", got.State)
	}
}

// Ensure a lifecycle action started on one replica is not run a second
// time by the leader's tracker while it is in progress.
func TestReplicaTrackerLeavesALiveReplicasAction(t *testing.T) {
	r := newReplicas()
	adir, bdir := flowstest.NewDirectory(), flowstest.NewDirectory()
	a := r.replica(t, "a", adir, time.Hour)
	b := r.replica(t, "b", bdir, time.Hour)
	inv := submit(t, b)
	b.Wait()
	entered, release := make(chan struct{}, 1), make(chan struct{})
	bdir.RemoveGroupMemberFunc = func(ctx context.Context, gid, uid string) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return nil
	}
	if _, err := b.Act(t.Context(), inv.ID, inviter, flows.ActionRevokeGroups); err != nil {
		t.Fatal(err)
	}
	<-entered
	if _, err := a.Track(t.Context()); err != nil {
		t.Fatal(err)
	}
	close(release)
	b.Wait()
	a.Wait()
	if n := adir.Count("RemoveGroupMember"); n != 0 {
		t.Fatalf("leader removed %d memberships, want 0 (b runs the action)", n)
	}
	if got := r.invitation(t, inv.ID); got.State != flows.StateRevoked || got.Runner != "" {
		t.Fatalf("state %s, runner %q; want revoked, no runner", got.State, got.Runner)
	}
}

// Ensure Hold lets one replica at a time hold a name, and gives it up on
// release.
func TestReplicaHold(t *testing.T) {
	r := newReplicas()
	a := r.replica(t, "a", flowstest.NewDirectory(), time.Hour)
	b := r.replica(t, "b", flowstest.NewDirectory(), time.Hour)
	held, release, err := a.Hold(t.Context(), "bulk-file/F1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Hold(t.Context(), "bulk-file/F1"); !errors.Is(err, flows.ErrLeaseHeld) {
		t.Fatalf("b's Hold while a holds it: %v, want ErrLeaseHeld", err)
	}
	_, other, err := b.Hold(t.Context(), "bulk-file/F2")
	if err != nil {
		t.Fatalf("another name: %v", err)
	}
	other()
	release()
	if held.Err() == nil {
		t.Error("the held context outlived the release")
	}
	_, again, err := b.Hold(t.Context(), "bulk-file/F1")
	if err != nil {
		t.Fatalf("b's Hold after a released it: %v", err)
	}
	again()
	alone := flows.New(flows.Config{Directory: flowstest.NewDirectory(), Store: flowstest.NewStore(), Notifier: &flowstest.Notifier{}})
	defer alone.Close()
	for range 2 {
		_, rel, err := alone.Hold(t.Context(), "bulk-file/F1")
		if err != nil {
			t.Fatalf("a process alone: %v", err)
		}
		defer rel()
	}
}

// Ensure work under Hold stops when the lease is lost: it lapsed (the
// holder was paused past the TTL) and another replica took it.
func TestReplicaHoldLost(t *testing.T) {
	r := newReplicas()
	ttl := 300 * time.Millisecond // a renews every 100 ms
	a := r.replica(t, "a", flowstest.NewDirectory(), ttl)
	held, release, err := a.Hold(t.Context(), "bulk-file/F1")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	r.advance(time.Hour) // a's hold lapsed on the store's clock
	if _, err := r.store.AcquireLease(t.Context(), "bulk-file/F1", "b", time.Hour); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the work under the lost lease was not stopped")
	}
	if !errors.Is(context.Cause(held), flows.ErrLeaseHeld) {
		t.Errorf("cause %v, want the lease held by b", context.Cause(held))
	}
}

// Ensure an invitation created on a replica whose liveness lease is not
// held (another replica took its name after a lapse) is left to the
// leader without that replica's stamp: the leader runs it at once, even
// though the replica will be alive again.
func TestReplicaNotAliveLeavesNoStamp(t *testing.T) {
	r := newReplicas()
	adir, bdir := flowstest.NewDirectory(), flowstest.NewDirectory()
	a := r.replica(t, "a", adir, time.Hour)
	if _, err := r.store.AcquireLease(t.Context(), "replica/b", "a", time.Hour); err != nil {
		t.Fatal(err) // the leader adopting b's work holds b's name
	}
	b := r.replica(t, "b", bdir, time.Hour)
	inv := submit(t, b)
	b.Wait()
	if got := r.invitation(t, inv.ID); got.Runner != "" || got.State != flows.StateRequested {
		t.Fatalf("after b refused to run it: state %s, runner %q; want requested, no runner", got.State, got.Runner)
	}
	if n, err := a.Resume(t.Context()); err != nil || n != 1 {
		t.Fatalf("leader's Resume = %d, %v; want 1", n, err)
	}
	a.Wait()
	if got := r.invitation(t, inv.ID); got.State != flows.StateNotified {
		t.Fatalf("state %s, want notified", got.State)
	}
	if na, nb := adir.Count("Invite"), bdir.Count("Invite"); na != 1 || nb != 0 {
		t.Fatalf("POST /invitations: leader %d, b %d; want 1 and 0", na, nb)
	}
}

// Ensure a replica runs an unfinished invitation stamped with its name
// that no run of its claims (a release that failed, a run that ended on a
// store error): the leader leaves a live replica's invitations alone.
func TestReplicaOwnRuns(t *testing.T) {
	r := newReplicas()
	bdir := flowstest.NewDirectory()
	b := r.replica(t, "b", bdir, 200*time.Millisecond) // looks every 200 ms
	now := time.Now()
	if _, err := r.store.CreateInvitation(t.Context(), &flows.Invitation{ID: "inv_left", Inviter: inviter, Runner: "b",
		Request: flows.Request{Email: "bob@fabrikam.com", DisplayName: "Bob", RedirectURL: "https://myapplications.microsoft.com",
			Delivery: flows.DeliverySlackLink, UserType: flows.UserTypeGuest},
		State: flows.StateInviting, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.note.WaitFor(ctx, func(ns []flows.Notice) bool {
		return slices.ContainsFunc(ns, func(n flows.Notice) bool { return n.Kind == flows.NoticeDone })
	}); err != nil {
		t.Fatalf("b did not run the invitation it had left: %v", err)
	}
	b.Wait()
	if got := r.invitation(t, "inv_left"); got.State != flows.StateNotified || bdir.Count("Invite") != 1 {
		t.Fatalf("state %s after %d POSTs; want notified after 1", got.State, bdir.Count("Invite"))
	}
}

// Ensure an approval decided on one replica while another live replica
// still works on the invitation (here: delivering the approval requests)
// runs as soon as that work ends, on the replica that was asked, without
// waiting for the leader.
func TestReplicaDecisionWaitsForTheLiveRun(t *testing.T) {
	r := newReplicas()
	adir, bdir := flowstest.NewDirectory(), flowstest.NewDirectory()
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var once sync.Once
	r.note.NotifyFunc = func(ctx context.Context, n flows.Notice) error {
		if n.Kind == flows.NoticeApprovalRequested {
			once.Do(func() {
				entered <- struct{}{}
				<-release // b's delivery of the request is slow
			})
		}
		return nil
	}
	a := r.replica(t, "a", adir, time.Hour)
	b := r.replica(t, "b", bdir, time.Hour)
	for _, svc := range []*flows.Service{a, b} {
		p := svc.Policy()
		p.Approvers = []string{"UAPPR"}
		p.Domains = flows.DomainPolicy{Default: flows.DomainApprove}
		svc.SetPolicy(p)
	}
	req := request()
	req.Email, req.Justification = "bob@unknown.org", "Bob reviews our Q4 contracts."
	inv, err := b.Submit(t.Context(), "V1", inviter, req)
	if err != nil {
		t.Fatal(err)
	}
	<-entered // b delivers the approval request, holding the invitation
	if _, err := a.Decide(t.Context(), inv.ID, flows.Inviter{TeamID: inviter.TeamID, UserID: "UAPPR"}, true, ""); err != nil {
		t.Fatal(err)
	}
	close(release)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.note.WaitFor(ctx, func(ns []flows.Notice) bool {
		return slices.ContainsFunc(ns, func(n flows.Notice) bool { return n.Kind == flows.NoticeDone && n.Invitation.ID == inv.ID })
	}); err != nil {
		t.Fatalf("the approved invitation did not run (no leader here: the replica asked must run it): %v", err)
	}
	a.Wait()
	b.Wait()
	if na, nb := adir.Count("Invite"), bdir.Count("Invite"); na != 1 || nb != 0 {
		t.Fatalf("POST /invitations: a %d, b %d; want 1 by a, which was asked", na, nb)
	}
}

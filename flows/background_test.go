package flows_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

// Ensure Background resumes the unfinished invitations, stops the runs it
// started when its context ends (the lease was lost) and returns only once
// they did, and that the replica taking over finishes them.
func TestBackgroundStopsItsRunsAndAnotherReplicaFinishes(t *testing.T) {
	st, dir, note := flowstest.NewStore(), flowstest.NewDirectory(), &flowstest.Notifier{}
	entered := make(chan struct{}, 1)
	var hung, returned atomic.Int32
	dir.InviteFunc = func(ctx context.Context, inv flows.Invite) (flows.Invited, error) {
		if hung.Add(1) == 1 { // the first replica's call hangs until it stops leading
			entered <- struct{}{}
			<-ctx.Done()
			returned.Add(1)
			return flows.Invited{}, ctx.Err()
		}
		return dir.DefaultInvite(ctx, inv)
	}
	newReplica := func() *flows.Service {
		svc := flows.New(flows.Config{Directory: dir, Store: st, Notifier: note, PollInterval: -1, StopGrace: -1,
			Policy: flows.Policy{DefaultRedirectURL: "https://myapplications.microsoft.com"},
			Sleep:  func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
		t.Cleanup(svc.Close)
		return svc
	}
	now := time.Now()
	inv, err := st.CreateInvitation(t.Context(), &flows.Invitation{ID: "inv_1", Inviter: inviter,
		Request: flows.Request{Email: "bob@fabrikam.com", DisplayName: "Bob", RedirectURL: "https://myapplications.microsoft.com",
			Delivery: flows.DeliverySlackLink, UserType: flows.UserTypeGuest},
		State: flows.StateInviting, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		t.Fatal(err)
	}

	a, b := newReplica(), newReplica()
	actx, lose := context.WithCancel(t.Context())
	adone := make(chan error, 1)
	go func() { adone <- a.Background(actx) }()
	<-entered // a resumed the invitation and is inside POST /invitations
	lose()
	if err := <-adone; err != nil {
		t.Fatalf("Background: %v", err)
	}
	if got := returned.Load(); got != 1 {
		t.Fatal("Background returned while a run it started was still in flight")
	}
	got, err := st.Invitation(t.Context(), inv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != flows.StateInviting {
		t.Fatalf("state after the lease was lost = %s, want inviting (recorded for the next leader)", got.State)
	}

	bctx, stop := context.WithCancel(t.Context())
	bdone := make(chan error, 1)
	go func() { bdone <- b.Background(bctx) }()
	if err := note.WaitFor(t.Context(), func(ns []flows.Notice) bool { return len(ns) > 0 && ns[len(ns)-1].Kind == flows.NoticeDone }); err != nil {
		t.Fatal(err)
	}
	b.Wait()
	stop()
	<-bdone
	if got, err = st.Invitation(t.Context(), inv.ID); err != nil || got.State != flows.StateNotified {
		t.Fatalf("after the takeover: state %v, err %v; want notified", got.State, err)
	}
	if n := dir.Count("Invite"); n != 2 {
		t.Fatalf("POST /invitations %d times, want 2 (the one cut off, and the new leader's)", n)
	}
	if n := note.Count(flows.NoticeDone, inv.ID); n != 1 {
		t.Fatalf("%d done notices, want 1", n)
	}
}

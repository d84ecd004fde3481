package flows_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

// stopRig resumes one invitation in state inviting under Background with
// a context the test cancels (a stop: SIGTERM's, or a lost lease) while
// POST /invitations is in flight.
type stopRig struct {
	st      *flowstest.Store
	dir     *flowstest.Directory
	note    *flowstest.Notifier
	entered chan struct{}
	release chan struct{}
}

func newStopRig(t *testing.T) *stopRig {
	r := &stopRig{st: flowstest.NewStore(), dir: flowstest.NewDirectory(), note: &flowstest.Notifier{},
		entered: make(chan struct{}, 1), release: make(chan struct{})}
	first := true
	r.dir.InviteFunc = func(ctx context.Context, inv flows.Invite) (flows.Invited, error) {
		if first {
			first = false
			r.entered <- struct{}{}
			select {
			case <-r.release:
			case <-ctx.Done(): // what an HTTP call does when its context ends
				return flows.Invited{}, ctx.Err()
			}
		}
		return r.dir.DefaultInvite(ctx, inv)
	}
	now := time.Now()
	if _, err := r.st.CreateInvitation(t.Context(), &flows.Invitation{ID: "inv_1", Inviter: inviter,
		Request: flows.Request{Email: "bob@fabrikam.com", DisplayName: "Bob", RedirectURL: "https://myapplications.microsoft.com",
			Delivery: flows.DeliverySlackLink, UserType: flows.UserTypeGuest},
		State: flows.StateInviting, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *stopRig) service(t *testing.T, grace time.Duration) *flows.Service {
	svc := flows.New(flows.Config{Directory: r.dir, Store: r.st, Notifier: r.note, PollInterval: -1, StopGrace: grace,
		Policy: flows.Policy{DefaultRedirectURL: "https://myapplications.microsoft.com"},
		Sleep:  func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	t.Cleanup(svc.Close)
	return svc
}

// background runs svc.Background until its context is cancelled (cancel)
// and wait waits for it to return.
func background(t *testing.T, svc *flows.Service) (cancel func(), wait func() <-chan struct{}) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := svc.Background(ctx); err != nil {
			t.Errorf("Background: %v", err)
		}
	}()
	return cancel, func() <-chan struct{} { return done }
}

func (r *stopRig) state(t *testing.T) flows.State {
	inv, err := r.st.Invitation(t.Context(), "inv_1")
	if err != nil {
		t.Fatal(err)
	}
	return inv.State
}

// Ensure a stop lets the POST /invitations in flight finish within the
// grace and records its result, so the invitation resumed later goes on
// from there without inviting again; and that a call still in flight
// when the grace ends is cut off, the record kept for the resumption.
func TestStopGrace(t *testing.T) {
	t.Run("the call in flight finishes and is recorded", func(t *testing.T) {
		r := newStopRig(t)
		cancel, wait := background(t, r.service(t, time.Hour))
		<-r.entered
		cancel() // the stop: Background returns once the run has ended
		select {
		case <-wait():
			t.Fatal("the stop did not wait for the call in flight")
		case r.release <- struct{}{}: // Graph answers after the stop began
		}
		<-wait()
		if got := r.state(t); got != flows.StateInvited {
			t.Fatalf("state after the stop = %s, want invited (the POST's result recorded, no step after it)", got)
		}
		finish, finished := background(t, r.service(t, time.Hour)) // the next start, or another replica
		if err := r.note.WaitFor(t.Context(), func(ns []flows.Notice) bool {
			return len(ns) > 0 && ns[len(ns)-1].Kind == flows.NoticeDone
		}); err != nil {
			t.Fatal(err)
		}
		finish()
		<-finished()
		if n := r.dir.Count("Invite"); n != 1 {
			t.Fatalf("POST /invitations %d times, want 1", n)
		}
	})
	t.Run("a lost lease cuts the call off at once", func(t *testing.T) {
		r := newStopRig(t)
		ctx, lose := context.WithCancelCause(t.Context())
		done := make(chan error, 1)
		go func() { done <- r.service(t, time.Hour).Background(ctx) }()
		<-r.entered
		lose(flows.ErrLeaseLost)       // as Leader does: another replica leads now
		if err := <-done; err != nil { // an hour's grace would time the test out
			t.Fatalf("Background: %v", err)
		}
		if got := r.state(t); got != flows.StateInviting {
			t.Fatalf("state after the lease was lost = %s, want inviting (the new leader goes on)", got)
		}
	})
	t.Run("past the grace the call is cut off", func(t *testing.T) {
		r := newStopRig(t)
		cancel, wait := background(t, r.service(t, time.Millisecond))
		<-r.entered
		cancel() // Graph never answers: the call ends with the grace
		<-wait()
		if got := r.state(t); got != flows.StateInviting {
			t.Fatalf("state after the stop = %s, want inviting (kept for the resumption)", got)
		}
	})
}

// Ensure a stop lets only the call in flight finish: a step with several
// Graph calls (one per group) starts no new one after the stop.
func TestStopStartsNoNewCall(t *testing.T) {
	st, dir, note := flowstest.NewStore(), flowstest.NewDirectory(), &flowstest.Notifier{}
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var calls atomic.Int32
	dir.AddGroupMemberFunc = func(ctx context.Context, g, u string) error {
		if calls.Add(1) == 1 {
			entered <- struct{}{}
			<-release
		}
		return dir.DefaultAddGroupMember(ctx, g, u)
	}
	svc := flows.New(flows.Config{Directory: dir, Store: st, Notifier: note, PollInterval: -1, StopGrace: time.Hour,
		Policy: flows.Policy{Groups: []flows.Group{{Name: "Portal", ID: "g1"}, {Name: "Wiki", ID: "g2"}},
			DefaultRedirectURL: "https://myapplications.microsoft.com"},
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	inv, err := svc.Submit(t.Context(), "V1", inviter, request())
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	svc.Stop()
	close(release) // the first group's call finishes after the stop
	svc.Close()
	if n := calls.Load(); n != 1 {
		t.Errorf("%d group calls, want 1 (the one in flight at the stop)", n)
	}
	got, err := st.Invitation(t.Context(), inv.ID)
	if err != nil || got.State != flows.StateAttributesSet {
		t.Fatalf("state %s (%v), want attributes_set: the step stopped, to be resumed", got.State, err)
	}
}

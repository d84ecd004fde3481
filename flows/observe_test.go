package flows_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
)

// observer records what a Service reports.
type observer struct {
	mu       sync.Mutex
	steps    []string // "from ok" or "from error"
	finished []string // "state" or "failed/code"
	accepted []time.Duration
	waits    map[string][]time.Duration
	pending  int // the last count plus the changes since
}

func (o *observer) Step(from flows.State, _ time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	res := " ok"
	if err != nil {
		res = " error"
	}
	o.steps = append(o.steps, string(from)+res)
}

func (o *observer) Finished(inv *flows.Invitation) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := string(inv.State)
	if inv.Failure != nil {
		out += "/" + string(inv.Failure.Code)
	}
	o.finished = append(o.finished, out)
}

func (o *observer) Accepted(after time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.accepted = append(o.accepted, after)
}

func (o *observer) Waited(reason string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.waits == nil {
		o.waits = map[string][]time.Duration{}
	}
	o.waits[reason] = append(o.waits[reason], d)
}

func (o *observer) Pending(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending = n
}

func (o *observer) PendingChanged(delta int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending += delta
}

// get returns a copy of what o recorded.
func (o *observer) get() observer {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := map[string][]time.Duration{}
	for k, v := range o.waits {
		w[k] = slices.Clone(v)
	}
	return observer{steps: slices.Clone(o.steps), finished: slices.Clone(o.finished), accepted: slices.Clone(o.accepted),
		waits: w, pending: o.pending}
}

// Ensure an invitation's steps, its outcome, the pending count and the
// acceptance latency are each reported once.
func TestObserverFollowsAnInvitation(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	got := e.obs.get()
	// "notified": the sponsor, recorded after the DM.
	wantSteps := []string{"requested ok", "checking ok", "inviting ok", "invited ok", "attributes_set ok", "groups_added ok", "provisioned ok", "notified ok"}
	if !slices.Equal(got.steps, wantSteps) {
		t.Errorf("steps = %q\nwant    %q", got.steps, wantSteps)
	}
	if want := []string{"notified"}; !slices.Equal(got.finished, want) {
		t.Errorf("finished = %q, want %q", got.finished, want)
	}
	if got.pending != 1 {
		t.Errorf("pending = %d after the invitation, want 1", got.pending)
	}
	e.obs.Pending(7) // drifted: a cycle's count puts it right
	if st := e.track(t); st.Pending != 1 || e.obs.get().pending != 1 {
		t.Errorf("pending = %d after a cycle that counted %d, want 1", e.obs.get().pending, st.Pending)
	}
	e.advance(50 * time.Hour)
	e.dir.SetState(inv.ObjectID, flows.ExternalAccepted)
	e.track(t)
	acc := e.load(t, inv.ID)
	got = e.obs.get()
	if want := []time.Duration{acc.Tracking.AcceptedAt.Sub(acc.InvitedAt)}; !slices.Equal(got.accepted, want) || want[0] < 50*time.Hour {
		t.Errorf("accepted after %v, want %v (at least 50 h)", got.accepted, want)
	}
	if got.pending != 0 {
		t.Errorf("pending = %d after the acceptance, want 0", got.pending)
	}
	if len(got.finished) != 1 {
		t.Errorf("finished = %q: the acceptance must not count as another outcome", got.finished)
	}
}

// Ensure failures are reported with their code, from inside a run and from
// outside one (a cancelled pick), and retry waits with their reason.
func TestObserverFailuresAndWaits(t *testing.T) {
	t.Run("Throttled", func(t *testing.T) {
		e := newEnv(t)
		e.dir.InviteFunc = func(context.Context, flows.Invite) (flows.Invited, error) {
			return flows.Invited{}, throttled(3 * time.Second)
		}
		e.submit(t, "V1", request())
		got := e.obs.get()
		if want := []string{"failed/throttled"}; !slices.Equal(got.finished, want) {
			t.Errorf("finished = %q, want %q", got.finished, want)
		}
		if n := len(got.waits[flows.WaitThrottled]); n != flows.DefaultTransient.Attempts-1 || got.waits[flows.WaitThrottled][0] != 3*time.Second {
			t.Errorf("throttled waits = %v, want %d of 3s", got.waits[flows.WaitThrottled], flows.DefaultTransient.Attempts-1)
		}
		if last := got.steps[len(got.steps)-1]; last != "inviting error" {
			t.Errorf("last step = %q, want the failed invite", last)
		}
	})
	t.Run("Replication", func(t *testing.T) {
		e := newEnv(t)
		var n int
		e.dir.AddGroupMemberFunc = func(ctx context.Context, gid, uid string) error {
			if n++; n == 1 {
				return &flows.DirectoryError{Op: "add group member", Status: http.StatusNotFound}
			}
			return e.dir.DefaultAddGroupMember(ctx, gid, uid)
		}
		e.submit(t, "V1", request())
		got := e.obs.get()
		if want := []time.Duration{time.Second}; !slices.Equal(got.waits[flows.WaitReplication], want) || len(got.waits) != 1 {
			t.Errorf("waits = %v, want one replication wait of 1s", got.waits)
		}
		if want := []string{"notified"}; !slices.Equal(got.finished, want) {
			t.Errorf("finished = %q, want %q", got.finished, want)
		}
	})
	t.Run("CancelledPick", func(t *testing.T) {
		e := newEnv(t)
		e.dir.AddUser(flows.DirectoryUser{ID: "u-old", Mail: "bob@fabrikam.com"})
		inv := e.submit(t, "V1", request())
		if got := e.obs.get().finished; len(got) != 0 {
			t.Fatalf("finished = %q while the pick waits, want nothing", got)
		}
		if err := e.svc.Cancel(t.Context(), inv.ID, inviter); err != nil {
			t.Fatal(err)
		}
		if got, want := e.obs.get().finished, []string{"failed/cancelled"}; !slices.Equal(got, want) {
			t.Errorf("finished = %q, want %q", got, want)
		}
	})
}

// Ensure a lifecycle action that ends a pending invitation takes it off
// the pending count.
func TestObserverPendingAfterRevoke(t *testing.T) {
	e := newEnv(t)
	inv := e.pending(t, "bob@fabrikam.com")
	if _, err := e.svc.Act(t.Context(), inv.ID, inviter, flows.ActionRevokeGroups); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	if got := e.obs.get(); got.pending != 0 || len(got.finished) != 1 {
		t.Errorf("pending = %d, finished = %q; want 0 pending and the revoke not counted as an outcome", got.pending, got.finished)
	}
}

// Ensure a pending guest whose access ends in a tracking cycle leaves the
// pending count at zero, not below.
func TestObserverPendingAfterExpiry(t *testing.T) {
	e := expiryEnv(t, "")
	e.pending(t, "bob@fabrikam.com")
	e.track(t)
	e.advance(31 * day)
	if st := e.track(t); st.Expired != 1 {
		t.Fatalf("cycle after the end: %+v, want the access ended", st)
	}
	e.svc.Wait()
	if got := e.obs.get().pending; got != 0 {
		t.Errorf("pending = %d after the expiry, want 0", got)
	}
}

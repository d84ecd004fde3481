package flows_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

// sharedWindow is an in-memory flows.InviteWindow that several Services
// share, as replicas share a database.
type sharedWindow struct {
	mu      sync.Mutex
	at      []time.Time
	until   time.Time
	refused chan time.Duration // each refusal's wait
	// throttles counts the 429s recorded (with a live context).
	throttles atomic.Int32
}

func (w *sharedWindow) TakeInviteSlot(ctx context.Context, limit int, per time.Duration) (time.Duration, error) {
	if err := ctx.Err(); err != nil { // as a database would
		return 0, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	for len(w.at) > 0 && now.Sub(w.at[0]) >= per {
		w.at = w.at[1:]
	}
	var d time.Duration
	switch {
	case now.Before(w.until):
		d = w.until.Sub(now)
	case len(w.at) >= limit:
		d = w.at[0].Add(per).Sub(now)
	default:
		w.at = append(w.at, now)
		return 0, nil
	}
	select {
	case w.refused <- d:
	default:
	}
	return d, nil
}

func (w *sharedWindow) ThrottleInvites(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil { // as a database would
		return err
	}
	w.throttles.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if t := time.Now().Add(d); t.After(w.until) {
		w.until = t
	}
	return nil
}

// windowStore is a store that keeps the invitation window too.
type windowStore struct {
	*flowstest.Store
	*sharedWindow
}

// Ensure replicas sharing the store's invitation window stay under the
// limit together (each alone would allow the limit), and that a 429 one
// of them got makes the others wait too.
func TestInviteWindowSharedByReplicas(t *testing.T) {
	win := &sharedWindow{refused: make(chan time.Duration, 10)}
	st := windowStore{Store: flowstest.NewStore(), sharedWindow: win}
	dir, note := flowstest.NewDirectory(), &flowstest.Notifier{}
	replica := func() *flows.Service {
		svc := flows.New(flows.Config{Directory: dir, Store: st, Notifier: note, PollInterval: -1,
			Policy:      flows.Policy{DefaultRedirectURL: "https://myapplications.microsoft.com"},
			InviteLimit: 2, InviteWindow: time.Hour,
			Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }}) // retries at once
		t.Cleanup(svc.Close)
		return svc
	}
	a, b := replica(), replica()
	for i, email := range []string{"a@fabrikam.com", "b@fabrikam.com"} {
		if _, err := []*flows.Service{a, b}[i].Submit(t.Context(), "V"+email, inviter, flows.Request{Email: email}); err != nil {
			t.Fatal(err)
		}
	}
	a.Wait()
	b.Wait()
	if _, err := b.Submit(t.Context(), "Vc", inviter, flows.Request{Email: "c@fabrikam.com"}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-win.refused:
		if d < 59*time.Minute {
			t.Errorf("third invitation told to wait %s, want about the hour", d)
		}
	case <-t.Context().Done():
		t.Fatal("the third invitation was not held at the shared window")
	}
	if n := dir.Count("Invite"); n != 2 {
		t.Errorf("%d POST /invitations by two replicas within the window, want 2", n)
	}
	b.Close()

	// A 429 on one replica holds its retry and the other's invitation.
	win.mu.Lock()
	win.at = nil
	win.mu.Unlock()
	dir.InviteFunc = func(context.Context, flows.Invite) (flows.Invited, error) {
		return flows.Invited{}, throttled(30 * time.Minute)
	}
	if _, err := a.Submit(t.Context(), "Vd", inviter, flows.Request{Email: "d@fabrikam.com"}); err != nil {
		t.Fatal(err)
	}
	c := replica()
	if _, err := c.Submit(t.Context(), "Ve", inviter, flows.Request{Email: "e@fabrikam.com"}); err != nil {
		t.Fatal(err)
	}
	for held := 0; held < 2; { // a's retry and c's first attempt
		select {
		case d := <-win.refused:
			if d >= 29*time.Minute {
				held++
			}
		case <-t.Context().Done():
			t.Fatal("the invitations were not held by the 429")
		}
	}
	if n := dir.Count("Invite"); n != 3 {
		t.Errorf("%d POST /invitations, want 3 (two, then the one answered 429)", n)
	}
}

// Ensure a 429 on POST /invitations is recorded in the shared window with
// a live context (the call's own context has ended by then).
func TestSharedWindowRecordsThrottling(t *testing.T) {
	win := &sharedWindow{refused: make(chan time.Duration, 10)}
	dir, note := flowstest.NewDirectory(), &flowstest.Notifier{}
	dir.InviteFunc = func(context.Context, flows.Invite) (flows.Invited, error) {
		return flows.Invited{}, throttled(time.Second)
	}
	svc := flows.New(flows.Config{Directory: dir, Store: windowStore{Store: flowstest.NewStore(), sharedWindow: win}, Notifier: note,
		PollInterval: -1, Policy: flows.Policy{DefaultRedirectURL: "https://myapplications.microsoft.com"},
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	t.Cleanup(svc.Close)
	if _, err := svc.Submit(t.Context(), "V1", inviter, flows.Request{Email: "d@fabrikam.com"}); err != nil {
		t.Fatal(err)
	}
	svc.Wait()
	if n := win.throttles.Load(); n == 0 {
		t.Fatal("the 429 was not recorded in the shared window")
	}
}

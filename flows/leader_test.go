package flows_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
)

// fakeClock is a clock the test moves: After's channels fire on Advance.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	added   chan struct{} // a value per After call
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), added: make(chan struct{}, 1000)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	c.mu.Unlock()
	c.added <- struct{}{}
	return ch
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// waitTimers waits until n more After calls were made.
func (c *fakeClock) waitTimers(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-c.added:
		case <-time.After(10 * time.Second):
			t.Fatal("the leader never waited on the clock")
		}
	}
}

// flakyLeaser fails the calls of the holders in fail.
type flakyLeaser struct {
	*flows.LocalLeaser
	mu   sync.Mutex
	fail map[string]bool
}

func (f *flakyLeaser) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (flows.Lease, error) {
	f.mu.Lock()
	failing := f.fail[holder]
	f.mu.Unlock()
	if failing {
		return flows.Lease{}, errors.New("connection refused")
	}
	return f.LocalLeaser.AcquireLease(ctx, name, holder, ttl)
}

func (f *flakyLeaser) ReleaseLease(ctx context.Context, l flows.Lease) error {
	f.mu.Lock()
	failing := f.fail[l.Holder]
	f.mu.Unlock()
	if failing {
		return errors.New("connection refused")
	}
	return f.LocalLeaser.ReleaseLease(ctx, l)
}

func (f *flakyLeaser) setFailing(holder string, v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[holder] = v
}

// replica runs a Leader whose work reports its lease and waits for its
// context to end.
type replica struct {
	started chan flows.Lease // the fenced lease, at each start of the work
	stopped chan error       // the work context's error, at each stop
	cancel  context.CancelFunc
	done    chan struct{}
}

func runReplica(t *testing.T, clk *fakeClock, leaser flows.Leaser, holder string) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	r := &replica{started: make(chan flows.Lease, 10), stopped: make(chan error, 10), cancel: cancel, done: make(chan struct{})}
	ld := flows.Leader{Leaser: leaser, Holder: holder, TTL: 15 * time.Second, After: clk.After, Now: clk.Now}
	go func() {
		defer close(r.done)
		_ = ld.Run(ctx, func(ctx context.Context) error {
			l, _ := flows.Fence(ctx)
			r.started <- l
			<-ctx.Done()
			r.stopped <- ctx.Err()
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func (r *replica) mustStart(t *testing.T) flows.Lease {
	t.Helper()
	select {
	case l := <-r.started:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("the work did not start")
		return flows.Lease{}
	}
}

func (r *replica) mustStop(t *testing.T) {
	t.Helper()
	select {
	case <-r.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the work did not stop")
	}
}

func (r *replica) mustNotRun(t *testing.T) {
	t.Helper()
	select {
	case l := <-r.started:
		t.Fatalf("work started on a second replica (epoch %d)", l.Epoch)
	default:
	}
}

// Ensure one replica runs the work, the other waits, and a replica that
// shuts down hands the lease over at once (released, not left to expire).
func TestLeaderOneReplicaAndHandOver(t *testing.T) {
	clk := newFakeClock()
	leaser := &flows.LocalLeaser{Now: clk.Now}
	a := runReplica(t, clk, leaser, "a")
	l := a.mustStart(t)
	if l.Holder != "a" || l.Epoch != 1 || l.Name != flows.LeaseBackground {
		t.Fatalf("work fenced with %+v, want a's background lease at epoch 1", l)
	}
	clk.waitTimers(t, 1) // a waits to renew
	b := runReplica(t, clk, leaser, "b")
	clk.waitTimers(t, 1) // b was refused and waits to try again
	for range 5 {        // a renews; b keeps being refused
		clk.Advance(5 * time.Second)
		clk.waitTimers(t, 2)
	}
	b.mustNotRun(t)
	if !leaser.Holds(l) {
		t.Fatal("a's lease was not renewed at the same epoch")
	}

	a.cancel()
	a.mustStop(t)
	<-a.done
	if leaser.Holds(l) {
		t.Fatal("a shut down without releasing its lease")
	}
	clk.Advance(5 * time.Second) // b's next attempt, well before a's TTL would have run out
	got := b.mustStart(t)
	if got.Holder != "b" || got.Epoch != 2 {
		t.Fatalf("b fenced with %+v, want epoch 2", got)
	}
}

// Ensure a leader whose renewals fail stops its work before its lease can
// have expired, and another replica takes over once it has.
func TestLeaderStopsWhenRenewalsFail(t *testing.T) {
	clk := newFakeClock()
	leaser := &flakyLeaser{LocalLeaser: &flows.LocalLeaser{Now: clk.Now}, fail: map[string]bool{}}
	a := runReplica(t, clk, leaser, "a")
	a.mustStart(t)
	clk.waitTimers(t, 1)
	b := runReplica(t, clk, leaser, "b")
	clk.waitTimers(t, 1)

	leaser.setFailing("a", true) // a lost the database
	clk.Advance(5 * time.Second) // first failed renewal: a keeps working
	clk.waitTimers(t, 2)
	select {
	case <-a.stopped:
		t.Fatal("a stopped after one failed renewal")
	default:
	}
	clk.Advance(5 * time.Second) // second: a stops, 5s before its lease expires
	a.mustStop(t)
	b.mustNotRun(t)
	clk.waitTimers(t, 2)
	clk.Advance(5 * time.Second) // a's lease expired: b takes over
	if got := b.mustStart(t); got.Epoch != 2 {
		t.Fatalf("b fenced at epoch %d, want 2", got.Epoch)
	}
	a.mustNotRun(t)
}

// Ensure a leader that finds its lease taken (it was too slow to renew)
// stops at its next renewal, and its old lease no longer holds.
func TestLeaderStopsWhenLeaseTaken(t *testing.T) {
	clk := newFakeClock()
	var mu sync.Mutex
	skew := time.Duration(0) // how far the store's clock is ahead of a's
	leaser := &flows.LocalLeaser{Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clk.Now().Add(skew)
	}}
	a := runReplica(t, clk, leaser, "a")
	old := a.mustStart(t)
	clk.waitTimers(t, 1)
	mu.Lock()
	skew = 16 * time.Second // a stalled past its TTL before renewing
	mu.Unlock()
	stolen, err := leaser.AcquireLease(t.Context(), flows.LeaseBackground, "c", 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if stolen.Epoch != 2 {
		t.Fatalf("c's epoch %d, want 2", stolen.Epoch)
	}
	if leaser.Holds(old) {
		t.Fatal("a's lease still holds after c took it: a fenced write would pass")
	}
	clk.Advance(5 * time.Second) // a's renewal: c holds the lease
	a.mustStop(t)
	clk.waitTimers(t, 1)
	clk.Advance(5 * time.Second)
	clk.waitTimers(t, 1) // a tried again and was refused
	a.mustNotRun(t)
}

// Ensure a leader shutting down keeps its lease renewed while the work
// drains (its calls in flight finish within their grace, their writes
// fenced with the lease), cancels the work with a plain cancellation,
// and releases the lease once the work returned; and that a lease lost
// to another replica cancels the work with ErrLeaseLost, so its calls are
// cut off at once.
func TestLeaderDrainsOnShutdown(t *testing.T) {
	clk := newFakeClock()
	leaser := &flows.LocalLeaser{Now: clk.Now}
	ctx, cancel := context.WithCancel(t.Context())
	started, causes, finish := make(chan flows.Lease, 1), make(chan error, 1), make(chan struct{})
	done := make(chan struct{})
	ld := flows.Leader{Leaser: leaser, Holder: "a", TTL: 15 * time.Second, After: clk.After, Now: clk.Now}
	go func() {
		defer close(done)
		_ = ld.Run(ctx, func(ctx context.Context) error {
			l, _ := flows.Fence(ctx)
			started <- l
			<-ctx.Done()
			causes <- context.Cause(ctx)
			<-finish // a call in flight, finishing within its grace
			return nil
		})
	}()
	l := <-started
	clk.waitTimers(t, 1)
	cancel() // SIGTERM
	if cause := <-causes; !errors.Is(cause, context.Canceled) || errors.Is(cause, flows.ErrLeaseLost) {
		t.Fatalf("work cancelled with %v on shutdown, want context.Canceled", cause)
	}
	for range 4 { // 20 s of draining: past the 15 s TTL, still held
		clk.waitTimers(t, 1)
		clk.Advance(5 * time.Second)
	}
	clk.waitTimers(t, 1)
	if !leaser.Holds(l) {
		t.Fatal("the lease lapsed while the work drained")
	}
	close(finish)
	<-done
	if _, err := leaser.AcquireLease(t.Context(), flows.LeaseBackground, "b", 15*time.Second); err != nil {
		t.Fatalf("the lease was not released after the drain: %v", err)
	}

	// b leads now; a lease taken away from it cancels its work with
	// ErrLeaseLost.
	clk2 := newFakeClock()
	lost := &flakyLeaser{LocalLeaser: &flows.LocalLeaser{Now: clk2.Now}, fail: map[string]bool{}}
	ctx2, cancel2 := context.WithCancel(t.Context())
	defer cancel2()
	done2 := make(chan struct{})
	ld2 := flows.Leader{Leaser: lost, Holder: "b", TTL: 15 * time.Second, After: clk2.After, Now: clk2.Now}
	go func() {
		defer close(done2)
		_ = ld2.Run(ctx2, func(ctx context.Context) error {
			started <- flows.Lease{}
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return nil
		})
	}()
	<-started
	clk2.waitTimers(t, 1)
	lost.setFailing("b", true) // renewals fail: two in a row lose the lease
	for i := 0; i < 3; i++ {
		clk2.Advance(5 * time.Second)
		select {
		case cause := <-causes:
			if !errors.Is(cause, flows.ErrLeaseLost) {
				t.Fatalf("work cancelled with %v when the lease was lost, want ErrLeaseLost", cause)
			}
			cancel2()
			<-done2
			return
		case <-clk2.added:
		}
	}
	t.Fatal("the work was not stopped after renewals failed")
}

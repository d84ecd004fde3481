package flows

import (
	"context"
	"errors"
	"sync"
	"time"
)

// gate gives interactive directory calls priority over the acceptance
// tracker: the tracker waits until no interactive call is in flight and
// until any throttling window Graph announced (a 429's Retry-After, seen by
// either side) has passed.
type gate struct {
	mu     sync.Mutex
	active int           // interactive calls in flight
	idle   chan struct{} // closed when active drops to 0; nil while 0
	until  time.Time     // Graph throttles us until then
}

func (g *gate) enter() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active == 0 {
		g.idle = make(chan struct{})
	}
	g.active++
}

func (g *gate) leave(err error, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active == 0 {
		close(g.idle)
		g.idle = nil
	}
	g.throttledLocked(err, now)
}

// throttled records a 429's window.
func (g *gate) throttled(err error, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.throttledLocked(err, now)
}

func (g *gate) throttledLocked(err error, now time.Time) {
	var de *DirectoryError
	if errors.As(err, &de) && de.Throttled() {
		if t := now.Add(max(de.RetryAfter, time.Second)); t.After(g.until) {
			g.until = t
		}
	}
}

// wait blocks the tracker until no interactive call runs and Graph's
// throttling window has passed. sleep is the service's clock.
func (g *gate) wait(ctx context.Context, now func() time.Time, sleep func(context.Context, time.Duration) error) error {
	var waited time.Time // the window already slept through
	for {
		g.mu.Lock()
		idle, until := g.idle, g.until
		g.mu.Unlock()
		if idle != nil {
			select {
			case <-idle:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if d := until.Sub(now()); d > 0 && !until.Equal(waited) {
			if err := sleep(ctx, d); err != nil {
				return err
			}
			waited = until
			continue
		}
		return nil
	}
}

// throttleWait sleeps through the throttling window Graph announced last
// (if any): an invitation must not be sent into a 429 window another call
// was told about.
func (g *gate) throttleWait(ctx context.Context, now func() time.Time, sleep func(context.Context, time.Duration) error) error {
	g.mu.Lock()
	until := g.until
	g.mu.Unlock()
	if d := until.Sub(now()); d > 0 {
		return sleep(ctx, d)
	}
	return nil
}

// interactive is the Directory the invitation steps and lifecycle actions
// use: every call holds the gate, so the tracker yields to it.
type interactive struct {
	Directory
	g       *gate
	invites *window // told of a throttled POST /invitations
	now     func() time.Time
	grace   time.Duration // how long a call outlives its context (linger)
}

// call runs one Graph call through the gate, letting it outlive its
// context's cancellation by the grace (linger: a stop must not cut off a
// Graph write whose result the step is about to record). A call not yet
// started when its context ended does not start.
func call[T any](d interactive, ctx context.Context, fn func(context.Context) (T, error)) (out T, err error) {
	if err = ctx.Err(); err != nil {
		return out, err
	}
	d.g.enter()
	lctx, cancel := linger(ctx, d.grace)
	defer func() {
		cancel()
		d.g.leave(err, d.now())
	}()
	return fn(lctx)
}

// noResult adapts a call that returns only an error to call.
func noResult(fn func(context.Context) error) func(context.Context) (struct{}, error) {
	return func(ctx context.Context) (struct{}, error) { return struct{}{}, fn(ctx) }
}

func (d interactive) VerifiedDomains(ctx context.Context) ([]string, error) {
	return call(d, ctx, d.Directory.VerifiedDomains)
}

func (d interactive) FindUsers(ctx context.Context, email string, withUPN bool) ([]DirectoryUser, error) {
	return call(d, ctx, func(ctx context.Context) ([]DirectoryUser, error) { return d.Directory.FindUsers(ctx, email, withUPN) })
}

func (d interactive) Invite(ctx context.Context, inv Invite) (Invited, error) {
	out, err := call(d, ctx, func(ctx context.Context) (Invited, error) { return d.Directory.Invite(ctx, inv) })
	d.invites.throttled(ctx, err)
	return out, err
}

func (d interactive) UpdateUser(ctx context.Context, userID string, attrs Attributes) error {
	_, err := call(d, ctx, noResult(func(ctx context.Context) error { return d.Directory.UpdateUser(ctx, userID, attrs) }))
	return err
}

func (d interactive) AddGroupMember(ctx context.Context, groupID, userID string) error {
	_, err := call(d, ctx, noResult(func(ctx context.Context) error { return d.Directory.AddGroupMember(ctx, groupID, userID) }))
	return err
}

func (d interactive) RemoveGroupMember(ctx context.Context, groupID, userID string) error {
	_, err := call(d, ctx, noResult(func(ctx context.Context) error { return d.Directory.RemoveGroupMember(ctx, groupID, userID) }))
	return err
}

func (d interactive) DeleteUser(ctx context.Context, userID string) error {
	_, err := call(d, ctx, noResult(func(ctx context.Context) error { return d.Directory.DeleteUser(ctx, userID) }))
	return err
}

func (d interactive) DisableUser(ctx context.Context, userID string) error {
	_, err := call(d, ctx, noResult(func(ctx context.Context) error { return d.Directory.DisableUser(ctx, userID) }))
	return err
}

func (d interactive) AddSponsor(ctx context.Context, userID, sponsorID string) error {
	_, err := call(d, ctx, noResult(func(ctx context.Context) error { return d.Directory.AddSponsor(ctx, userID, sponsorID) }))
	return err
}

func (d interactive) User(ctx context.Context, idOrUPN string) (DirectoryUser, error) {
	return call(d, ctx, func(ctx context.Context) (DirectoryUser, error) { return d.Directory.User(ctx, idOrUPN) })
}

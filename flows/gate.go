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

// begin enters the gate for a call and lets the call outlive its
// context's cancellation by the grace (a stop must not cut off a Graph
// write whose result the step is about to record); end(err) leaves.
func (d interactive) begin(ctx context.Context) (context.Context, func(error)) {
	d.g.enter()
	ctx, cancel := linger(ctx, d.grace)
	return ctx, func(err error) {
		cancel()
		d.g.leave(err, d.now())
	}
}

func (d interactive) VerifiedDomains(ctx context.Context) (out []string, err error) {
	ctx, end := d.begin(ctx)
	defer func() { end(err) }()
	return d.Directory.VerifiedDomains(ctx)
}

func (d interactive) FindUsers(ctx context.Context, email string, withUPN bool) (out []DirectoryUser, err error) {
	ctx, end := d.begin(ctx)
	defer func() { end(err) }()
	return d.Directory.FindUsers(ctx, email, withUPN)
}

func (d interactive) Invite(ctx context.Context, inv Invite) (out Invited, err error) {
	ctx, end := d.begin(ctx)
	defer func() {
		end(err)
		d.invites.throttled(ctx, err)
	}()
	return d.Directory.Invite(ctx, inv)
}

func (d interactive) UpdateUser(ctx context.Context, userID string, attrs Attributes) (err error) {
	ctx, end := d.begin(ctx)
	defer func() { end(err) }()
	return d.Directory.UpdateUser(ctx, userID, attrs)
}

func (d interactive) AddGroupMember(ctx context.Context, groupID, userID string) (err error) {
	ctx, end := d.begin(ctx)
	defer func() { end(err) }()
	return d.Directory.AddGroupMember(ctx, groupID, userID)
}

func (d interactive) RemoveGroupMember(ctx context.Context, groupID, userID string) (err error) {
	ctx, end := d.begin(ctx)
	defer func() { end(err) }()
	return d.Directory.RemoveGroupMember(ctx, groupID, userID)
}

func (d interactive) DeleteUser(ctx context.Context, userID string) (err error) {
	ctx, end := d.begin(ctx)
	defer func() { end(err) }()
	return d.Directory.DeleteUser(ctx, userID)
}

func (d interactive) DisableUser(ctx context.Context, userID string) (err error) {
	ctx, end := d.begin(ctx)
	defer func() { end(err) }()
	return d.Directory.DisableUser(ctx, userID)
}

func (d interactive) AddSponsor(ctx context.Context, userID, sponsorID string) (err error) {
	ctx, end := d.begin(ctx)
	defer func() { end(err) }()
	return d.Directory.AddSponsor(ctx, userID, sponsorID)
}

func (d interactive) User(ctx context.Context, idOrUPN string) (out DirectoryUser, err error) {
	ctx, end := d.begin(ctx)
	defer func() { end(err) }()
	return d.Directory.User(ctx, idOrUPN)
}

package flows

import (
	"context"
	"errors"
	"time"
)

type ctxKey int

const invitationKey ctxKey = 0

// WithInvitationID returns ctx carrying an invitation's ID. The Service
// logs an invitation's background work with such a context, so a log
// handler can add the ID to every line (see bot.LogHandler).
func WithInvitationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, invitationKey, id)
}

// InvitationID returns the invitation ID ctx carries, or "".
func InvitationID(ctx context.Context) string {
	id, _ := ctx.Value(invitationKey).(string)
	return id
}

// linger returns a context that carries ctx's values and deadline but is
// cancelled only grace after ctx is (or when cancel is called): a Graph
// call or store write in flight when the service stops (SIGTERM, a lost
// lease) finishes, within the grace, and its result is recorded, rather
// than being cut off after Graph acted, which would make the resumed
// invitation repeat it. Waits (Retry-After, pacing) still end with ctx.
// A grace of zero or less returns ctx itself. A context cancelled because
// the lease was lost (cause ErrLeaseLost) is not given the grace: the
// writes are fenced off, and the new leader runs the work.
func linger(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	if ctx.Err() != nil {
		return ctx, func() {} // a call not started when the stop came does not start
	}
	return lingerWrite(ctx, grace)
}

// lingerWrite is linger for a store write, which may begin after the stop:
// it records the result of a call that finished within the grace.
func lingerWrite(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	if grace <= 0 {
		return ctx, func() {}
	}
	d, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if dl, ok := ctx.Deadline(); ok {
		var c2 context.CancelFunc
		d, c2 = context.WithDeadline(d, dl)
		c1 := cancel
		cancel = func() { c2(); c1() }
	}
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(context.Cause(ctx), ErrLeaseLost) {
			cancel() // another replica leads now: no grace
			return
		}
		t := time.AfterFunc(grace, cancel)
		context.AfterFunc(d, func() { t.Stop() })
	})
	return d, func() {
		stop()
		cancel()
	}
}

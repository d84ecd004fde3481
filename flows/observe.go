package flows

import (
	"context"
	"errors"
	"time"
)

// Observer is told what the Service does, for metrics. Its methods must be
// fast and safe for concurrent use: they run on the Service's goroutines.
type Observer interface {
	// Step reports one step of an invitation's run: the state it started
	// from, how long it took and its error (nil: the step succeeded). A
	// step interrupted by shutdown is not reported.
	Step(from State, took time.Duration, err error)
	// Finished reports an invitation that reached the end of its run:
	// notified (invited, or an existing account picked) or failed.
	Finished(inv *Invitation)
	// Accepted reports a guest's acceptance, with the time from the
	// invitation (or its last resend) to the acceptance.
	Accepted(after time.Duration)
	// Waited reports a wait before a call to Graph or Slack: one of the
	// Wait reasons, and how long.
	Waited(reason string, d time.Duration)
	// Pending reports the number of invitations waiting for their guest to
	// accept, as each tracking cycle counts them.
	Pending(n int)
	// PendingChanged reports an invitation that began (+1) or stopped (-1)
	// waiting for its guest between two counts.
	PendingChanged(delta int)
}

// The reasons Observer.Waited is given.
const (
	WaitThrottled   = "throttled"   // Graph answered 429: its Retry-After before the retry
	WaitTransient   = "transient"   // backoff after a Graph 5xx, timeout or transport error
	WaitReplication = "replication" // a user created moments ago is not visible yet (404)
	WaitInviteLimit = "invite_limit"
	// WaitThrottleWindow: an invitation waits out a 429 window that
	// another call was told about.
	WaitThrottleWindow = "throttle_window"
	// WaitTrackerGate: the acceptance tracker waits out a 429 window.
	WaitTrackerGate = "tracker_gate"
	WaitSlackRetry  = "slack_retry" // before re-sending a notice Slack refused
	WaitBulkDM      = "bulk_dm"     // a bulk row's redeem-link DM, paced under Slack's message rate
)

// nopObserver is the Observer of a Service configured without one.
type nopObserver struct{}

func (nopObserver) Step(State, time.Duration, error) {}
func (nopObserver) Finished(*Invitation)             {}
func (nopObserver) Accepted(time.Duration)           {}
func (nopObserver) Waited(string, time.Duration)     {}
func (nopObserver) Pending(int)                      {}
func (nopObserver) PendingChanged(int)               {}

// observedStore reports every committed change of an invitation that
// matters to the Observer: the end of its run, acceptance, and whether it
// waits for its guest. Watching the store's writes catches each change
// once, whichever code path made it.
type observedStore struct {
	Store
	obs   Observer
	grace time.Duration // how long a write outlives its context (linger)
}

// UpdateInvitation records a step's result: it outlives the stop of its
// run by the grace, so a Graph call that finished is recorded.
func (o observedStore) UpdateInvitation(ctx context.Context, id string, fn func(*Invitation) error) (*Invitation, error) {
	ctx, cancel := lingerWrite(ctx, o.grace)
	defer cancel()
	var (
		from    State
		pending bool
	)
	got, err := o.Store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		from, pending = cur.State, cur.Pending()
		return fn(cur)
	})
	if err != nil {
		return got, err
	}
	if !from.Terminal() && got.State.Terminal() {
		o.obs.Finished(got)
	}
	if from != StateAccepted && got.State == StateAccepted && !got.InvitedAt.IsZero() {
		o.obs.Accepted(max(got.Tracking.AcceptedAt.Sub(got.InvitedAt), 0))
	}
	switch now := got.Pending(); {
	case now && !pending:
		o.obs.PendingChanged(1)
	case pending && !now:
		o.obs.PendingChanged(-1)
	}
	return got, nil
}

// pause sleeps d on the service's clock, telling the Observer why.
func (s *Service) pause(ctx context.Context, reason string, d time.Duration) error {
	s.obs.Waited(reason, d)
	return s.sleep(ctx, d)
}

// pauser returns pause for one reason, as a sleep function.
func (s *Service) pauser(reason string) func(context.Context, time.Duration) error {
	return func(ctx context.Context, d time.Duration) error { return s.pause(ctx, reason, d) }
}

// retryReason is the Wait reason for a retry after err.
func retryReason(err error) string {
	var de *DirectoryError
	switch {
	case errors.As(err, &de) && de.Throttled():
		return WaitThrottled
	case errors.Is(err, ErrNotFound):
		return WaitReplication
	}
	return WaitTransient
}

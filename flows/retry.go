package flows

import (
	"context"
	"errors"
	"time"
)

// Backoff bounds the retries of one step: at most Attempts tries, waiting
// Retry-After when the other side gave one, else Base·2ⁿ capped at Max.
type Backoff struct {
	Attempts int
	Base     time.Duration
	Max      time.Duration
}

// Default retry budgets. Transient covers throttling and outages; the
// replication budget (1+2+4+…+32 s, about 95 s in all) covers the 404s Graph
// returns for a few seconds to a minute after a user is created.
var (
	DefaultTransient   = Backoff{Attempts: 6, Base: time.Second, Max: 30 * time.Second}
	DefaultReplication = Backoff{Attempts: 8, Base: time.Second, Max: 32 * time.Second}
)

// Delay returns the wait after the given failed attempt (1-based).
func (b Backoff) Delay(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, 5*time.Minute)
	}
	d := b.Base << (attempt - 1)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	return d
}

// retryAfterer is implemented by errors that carry the other side's
// requested wait (Slack's rate limit error in bot).
type retryAfterer interface{ RetryAfter() time.Duration }

// waitFor returns the Retry-After carried by err, if any.
func waitFor(err error) time.Duration {
	var de *DirectoryError
	if errors.As(err, &de) {
		return de.RetryAfter
	}
	var ra retryAfterer
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	return 0
}

// SleepContext waits d or until ctx is done. It is the default Sleep.
func SleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryDirectory runs call until it succeeds or its error is final.
// Temporary errors (429, 5xx, transport) use the transient budget; when
// afterCreate is set, 404 uses the replication budget too. onWait is told
// about each wait before it starts.
func (s *Service) retryDirectory(ctx context.Context, afterCreate bool, onWait func(time.Duration), call func(context.Context) error) error {
	var transient, missing int
	for {
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		err := call(cctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		var de *DirectoryError
		if !errors.As(err, &de) {
			return err
		}
		var wait time.Duration
		switch {
		case de.Temporary():
			transient++
			if transient >= s.transient.Attempts {
				if de.Throttled() && de.RetryAfter > 0 {
					// Giving up on a 429: its window still holds the next
					// call (this invitation's next step, or the next
					// invitation), so wait it out first.
					_ = s.pause(ctx, retryReason(de), s.transient.Delay(transient, de.RetryAfter))
				}
				return err
			}
			wait = s.transient.Delay(transient, de.RetryAfter)
		case afterCreate && errors.Is(de, ErrNotFound):
			missing++
			if missing >= s.replication.Attempts {
				return err
			}
			wait = s.replication.Delay(missing, 0)
		default:
			return err
		}
		if onWait != nil {
			onWait(wait)
		}
		if err := s.pause(ctx, retryReason(de), wait); err != nil {
			return err
		}
	}
}

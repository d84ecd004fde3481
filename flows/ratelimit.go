package flows

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Graph's invitation manager allows 150 requests per 5 seconds per tenant,
// for all apps together (reference/graph.md §2.3). invitebot's window is
// 10% longer: Graph counts a request when it arrives, invitebot when it
// sends it, and latency varies, so an exact window still draws 429s.
const (
	DefaultInviteLimit  = 150
	DefaultInviteWindow = 5500 * time.Millisecond
)

// InviteWindow is Graph's per-tenant invitation window kept where every
// replica sees it (a shared store such as PostgreSQL), so that replicas
// together stay under the limit and all wait out a 429 one of them got.
// When the Store implements it, the Service paces POST /invitations with
// it; otherwise each process keeps the window in memory (exact for one
// process, as with bbolt).
type InviteWindow interface {
	// TakeInviteSlot records one POST /invitations now and returns 0 if
	// fewer than limit were recorded within the last per and no throttling
	// window is open; otherwise it records nothing and returns how long to
	// wait before trying again. Time is the store's clock.
	TakeInviteSlot(ctx context.Context, limit int, per time.Duration) (time.Duration, error)
	// ThrottleInvites records that Graph throttled invitations for d
	// from now (a 429's Retry-After); TakeInviteSlot waits for it. A window
	// ending before the one recorded changes nothing.
	ThrottleInvites(ctx context.Context, d time.Duration) error
}

// window is a sliding-window limiter: at most n events in any span of per.
// It runs on the real clock: it paces calls to Graph, not the retry logic.
type window struct {
	mu   sync.Mutex
	n    int
	per  time.Duration
	past []time.Time // the last n admissions, oldest first
	// waited, if set, is told how long an admission had to wait.
	waited func(time.Duration)
	// shared, if set, is the window every replica sees: wait takes its
	// slots there (and falls back to the in-memory window if the store
	// fails to answer: pacing per replica beats not inviting).
	shared InviteWindow
	// failed, if set, is told when shared failed.
	failed func(error)
}

func newWindow(n int, per time.Duration) *window { return &window{n: n, per: per} }

// wait blocks until one more event fits in the window, then records it.
func (w *window) wait(ctx context.Context) error {
	began := time.Now()
	for held := false; w.shared != nil; held = true {
		d, err := w.shared.TakeInviteSlot(ctx, w.n, w.per)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if w.failed != nil {
				w.failed(err)
			}
			break
		}
		if d <= 0 {
			if held && w.waited != nil {
				w.waited(time.Since(began))
			}
			return nil
		}
		if err := SleepContext(ctx, d); err != nil {
			return err
		}
	}
	for held := false; ; held = true {
		w.mu.Lock()
		now := time.Now()
		for len(w.past) > 0 && now.Sub(w.past[0]) >= w.per {
			w.past = w.past[1:]
		}
		if len(w.past) < w.n {
			w.past = append(w.past, now)
			w.mu.Unlock()
			if held && w.waited != nil {
				w.waited(now.Sub(began))
			}
			return nil
		}
		d := w.per - now.Sub(w.past[0])
		w.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// throttled tells the shared window (if any) that Graph answered a POST
// /invitations with 429: every replica then waits out its Retry-After.
func (w *window) throttled(ctx context.Context, err error) {
	var de *DirectoryError
	if w.shared == nil || !errors.As(err, &de) || !de.Throttled() {
		return
	}
	if serr := w.shared.ThrottleInvites(ctx, max(de.RetryAfter, time.Second)); serr != nil && w.failed != nil {
		w.failed(serr)
	}
}

package flows

import (
	"context"
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

// window is a sliding-window limiter: at most n events in any span of per.
// It runs on the real clock: it paces calls to Graph, not the retry logic.
type window struct {
	mu   sync.Mutex
	n    int
	per  time.Duration
	past []time.Time // the last n admissions, oldest first
	// waited, if set, is told how long an admission had to wait.
	waited func(time.Duration)
}

func newWindow(n int, per time.Duration) *window { return &window{n: n, per: per} }

// wait blocks until one more event fits in the window, then records it.
func (w *window) wait(ctx context.Context) error {
	began := time.Now()
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

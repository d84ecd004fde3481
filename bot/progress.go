package bot

import (
	"context"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// progressEvery is how long a step must last before the dialog shows it,
// and the least time between two intermediate states of a dialog: steps
// that finish sooner show nothing between the "Checking…" of the
// submission's answer and the final state.
const progressEvery = time.Second

// progress coalesces the dialogs' intermediate states: the one place that
// decides which progress reaches views.update. Per invitation it keeps the
// latest intermediate view and shows it once it has been the latest for
// progressEvery (its step is slow), at most one a progressEvery; a final
// view (the outcome, the pick dialog, a wait for the inviter) cancels what
// is pending, waits for an update in flight, and is always sent.
type progress struct {
	mu      sync.Mutex
	dialogs map[string]*dialog // invitation ID → its dialog's progress
}

type dialog struct {
	send     sync.Mutex // orders this dialog's views.update calls
	ext      string     // the dialog's external_id
	since    time.Time  // when the pending state began
	last     time.Time  // when the last intermediate state was shown
	pending  *slack.ModalViewRequest
	timer    *time.Timer
	flushing bool // the timer fired: an update is being sent
	closed   bool // a final view was sent: intermediate ones are stale
	// known is set when the pending step is known to be slow (a retry
	// after a wait of at least progressEvery): it shows without waiting.
	known bool
}

// due returns when d's pending state may be shown; p.mu must be held.
func (d *dialog) due(every time.Duration) time.Time {
	t := d.since.Add(every)
	if d.known {
		t = d.since
	}
	if n := d.last.Add(every); !d.last.IsZero() && n.After(t) {
		t = n
	}
	return t
}

// showProgress makes v the dialog's pending intermediate state: each
// progress notice is a new step, so the wait starts again. A step known to
// be slow (slow: a retry after a long wait) is shown now if the last update
// is far enough back, before the caller starts waiting.
func (b *Bot) showProgress(id, ext string, v slack.ModalViewRequest, slow bool) {
	p := &b.dialogs
	now := time.Now()
	p.mu.Lock()
	if p.dialogs == nil {
		p.dialogs = map[string]*dialog{}
	}
	d := p.dialogs[id]
	if d == nil {
		d = &dialog{ext: ext}
		p.dialogs[id] = d
	}
	d.pending, d.since, d.known = &v, now, slow
	if d.flushing {
		p.mu.Unlock()
		return // the update in flight schedules the next
	}
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if due := d.due(b.progressEvery); due.After(now) {
		d.timer = time.AfterFunc(due.Sub(now), func() { b.flushProgress(d) })
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	b.flushProgress(d)
}

// flushProgress shows d's pending intermediate state, best effort. While
// it sends, later progress only replaces the pending state; the next timer
// is set when the update is done, so two updates are always progressEvery
// apart.
func (b *Bot) flushProgress(d *dialog) {
	p := &b.dialogs
	p.mu.Lock()
	if d.closed || d.pending == nil || time.Now().Before(d.due(b.progressEvery)) {
		p.mu.Unlock()
		return // superseded: a newer timer (or a final view) took over
	}
	v := d.pending
	d.pending, d.timer, d.flushing = nil, nil, true
	p.mu.Unlock()
	if b.jobsCtx.Err() == nil {
		d.send.Lock()
		p.mu.Lock()
		closed := d.closed
		p.mu.Unlock()
		if !closed {
			ctx, cancel := context.WithTimeout(bestEffort(b.jobsCtx), 10*time.Second)
			if err := b.updateView(ctx, d.ext, *v, false); err != nil {
				b.log.DebugContext(ctx, "progress dialog update", "err", err)
			}
			cancel()
		}
		d.send.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	d.flushing, d.last = false, time.Now()
	if d.pending != nil && !d.closed {
		d.timer = time.AfterFunc(time.Until(d.due(b.progressEvery)), func() { b.flushProgress(d) })
	}
}

// showFinal sends a final view (must: retried while Slack has not applied
// the submission's answer) after cancelling the invitation's pending
// progress. Progress after it starts afresh (the pick dialog is followed
// by the invitation's own steps).
func (b *Bot) showFinal(ctx context.Context, id, ext string, v slack.ModalViewRequest, must bool) error {
	p := &b.dialogs
	p.mu.Lock()
	d := p.dialogs[id]
	if d != nil {
		if d.timer != nil {
			d.timer.Stop()
		}
		d.pending, d.timer, d.closed = nil, nil, true
		delete(p.dialogs, id)
	}
	p.mu.Unlock()
	if d != nil {
		d.send.Lock() // after an update in flight, never before it
		defer d.send.Unlock()
	}
	return b.updateView(ctx, ext, v, must)
}

// stopProgress cancels every pending progress update (Close).
func (b *Bot) stopProgress() {
	p := &b.dialogs
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, d := range p.dialogs {
		if d.timer != nil {
			d.timer.Stop()
		}
		d.pending, d.timer, d.closed = nil, nil, true
		delete(p.dialogs, id)
	}
}

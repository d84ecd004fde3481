package bot

import (
	"context"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// progressEvery is how often an invitation's dialog may show an
// intermediate state. The first is shown only once the invitation has run
// this long: steps that finish sooner show nothing between the "Checking…"
// of the submission's answer and the final state.
const progressEvery = time.Second

// progress coalesces the dialogs' intermediate states: the one place that
// decides which progress reaches views.update. Per invitation it keeps the
// latest intermediate view and shows it when due (at most one a second);
// a final view (the outcome, or the pick dialog) cancels what is pending,
// waits for an update in flight, and is always sent.
type progress struct {
	mu      sync.Mutex
	dialogs map[string]*dialog // invitation ID → its dialog's progress
}

type dialog struct {
	send    sync.Mutex // orders this dialog's views.update calls
	ext     string     // the dialog's external_id
	first   time.Time  // the first progress seen
	last    time.Time  // the last intermediate state shown
	pending *slack.ModalViewRequest
	timer   *time.Timer
	closed  bool // a final view was sent: intermediate ones are stale
}

// showProgress schedules v as the dialog's next intermediate state.
func (b *Bot) showProgress(id, ext string, v slack.ModalViewRequest) {
	p := &b.dialogs
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dialogs == nil {
		p.dialogs = map[string]*dialog{}
	}
	d := p.dialogs[id]
	if d == nil {
		d = &dialog{ext: ext, first: now}
		p.dialogs[id] = d
	}
	d.pending = &v
	if d.timer == nil {
		due := d.first.Add(b.progressEvery)
		if !d.last.IsZero() {
			due = d.last.Add(b.progressEvery)
		}
		d.timer = time.AfterFunc(max(due.Sub(now), 0), func() { b.flushProgress(d) })
	}
}

// flushProgress shows d's pending intermediate state, best effort. Its
// timer stays set until the update is done, so the next one is scheduled
// from its end: two updates are always progressEvery apart.
func (b *Bot) flushProgress(d *dialog) {
	p := &b.dialogs
	p.mu.Lock()
	v := d.pending
	d.pending = nil
	p.mu.Unlock()
	if v != nil && b.jobsCtx.Err() == nil {
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
	d.timer = nil
	if v != nil {
		d.last = time.Now()
	}
	if d.pending != nil && !d.closed {
		d.timer = time.AfterFunc(max(time.Until(d.last.Add(b.progressEvery)), 0), func() { b.flushProgress(d) })
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

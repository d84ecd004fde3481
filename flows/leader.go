package flows

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"
)

// DefaultLeaseTTL is how long the background lease lasts without a renewal
// when Leader.TTL is zero.
const DefaultLeaseTTL = 15 * time.Second

// Leader runs work on at most one replica at a time: the one holding the
// lease Name. Every replica runs a Leader with the same Name and its own
// Holder; the others keep trying to acquire the lease and take over when
// the holder stops renewing it (it died, or lost the database).
//
// The holder renews every TTL/3. Work runs under a context fenced with the
// lease (WithFence), so its store writes fail with ErrFenced once another
// replica has taken the lease over. The context is cancelled when the
// lease is lost (a renewal says another replica holds it, or two renewals
// in a row fail: by then less than a third of the TTL is left), and Run
// waits for work to return before trying to acquire the lease again.
type Leader struct {
	Leaser Leaser
	Name   string        // "": LeaseBackground
	Holder string        // this replica, unique among the replicas
	TTL    time.Duration // zero: DefaultLeaseTTL
	Logger *slog.Logger  // nil: discard

	// After and Now are the clock; nil: time.After and time.Now. Tests
	// substitute a controllable one.
	After func(time.Duration) <-chan time.Time
	Now   func() time.Time
	// Changed, if set, is called when this replica starts (true) and stops
	// (false) leading.
	Changed func(leading bool, l Lease)
}

func (ld *Leader) defaults() {
	if ld.Name == "" {
		ld.Name = LeaseBackground
	}
	if ld.TTL <= 0 {
		ld.TTL = DefaultLeaseTTL
	}
	if ld.Logger == nil {
		ld.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if ld.After == nil {
		ld.After = time.After
	}
	if ld.Now == nil {
		ld.Now = time.Now
	}
	if ld.Changed == nil {
		ld.Changed = func(bool, Lease) {}
	}
}

// Run acquires the lease, runs work while it holds it, and tries again
// after losing it, until ctx is done. On return the lease is released, so
// another replica can take over at once. If work returns while the lease
// is held, its error is logged, the lease released and work started again
// on the next acquisition (on whichever replica gets it).
func (ld Leader) Run(ctx context.Context, work func(ctx context.Context) error) error {
	ld.defaults()
	every := ld.TTL / 3
	log := ld.Logger.With("lease", ld.Name, "holder", ld.Holder)
	held := false // logged once per change, not at every attempt
	for {
		l, err := ld.acquire(ctx, every)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			held = false
			ld.lead(ctx, log, l, every, work)
			if ctx.Err() != nil {
				return nil
			}
		case errors.Is(err, ErrLeaseHeld):
			if !held {
				log.Info("another replica runs the background work", "err", err)
				held = true
			}
		default:
			log.Warn("acquire lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ld.After(every):
		}
	}
}

// acquire takes or renews the lease, waiting at most every for the store.
func (ld Leader) acquire(ctx context.Context, every time.Duration) (Lease, error) {
	actx, cancel := context.WithTimeout(ctx, every)
	defer cancel()
	return ld.Leaser.AcquireLease(actx, ld.Name, ld.Holder, ld.TTL)
}

// lead runs work under lease l until the lease is lost, work returns or
// ctx is done, then stops work, waits for it and releases the lease.
func (ld Leader) lead(ctx context.Context, log *slog.Logger, l Lease, every time.Duration, work func(context.Context) error) {
	log.Info("leading: running the background work", "epoch", l.Epoch)
	ld.Changed(true, l)
	wctx, stop := context.WithCancelCause(WithFence(ctx, l))
	done := make(chan error, 1)
	go func() { done <- work(wctx) }()
	lastOK := ld.Now() // when the last successful acquisition or renewal began
	why := ""
loop:
	for {
		select {
		case <-ctx.Done():
			why = "shutting down"
			break loop
		case err := <-done:
			done <- err // read again below
			why = "the work ended"
			if err != nil {
				log.Error("background work", "err", err)
			}
			break loop
		case <-ld.After(every):
		}
		began := ld.Now()
		nl, err := ld.acquire(ctx, every)
		switch {
		case ctx.Err() != nil:
			why = "shutting down"
			break loop
		case err == nil && nl.Epoch == l.Epoch:
			l, lastOK = nl, began
		case err == nil:
			// Taken and given back between two renewals: writes were
			// fenced meanwhile, so the work starts over.
			why = "the lease changed hands in between"
			l = nl
			break loop
		case errors.Is(err, ErrLeaseHeld):
			why = err.Error()
			break loop
		case began.Sub(lastOK) >= 2*every:
			why = "renewal failed twice: " + err.Error()
			break loop
		default:
			log.Warn("renew lease; trying again", "err", err)
		}
	}
	if why == "shutting down" {
		// The work's calls in flight finish within their stop grace
		// (linger): keep the lease meanwhile, so that their writes,
		// fenced with it, record what they did.
		stop(context.Canceled)
		l = ld.drain(ctx, l, every, done)
	} else {
		// Lost: the writes are fenced off already; a call in flight
		// would only run beside the new leader's. Cut it off.
		stop(ErrLeaseLost)
	}
	<-done
	ld.Changed(false, l)
	log.Info("stopped leading", "epoch", l.Epoch, "why", why)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), every)
	defer cancel()
	if err := ld.Leaser.ReleaseLease(rctx, l); err != nil {
		log.Warn("release lease", "err", err)
	}
}

// drain renews lease l every interval until the work ends (done, which it
// leaves readable), and returns the lease as last renewed.
func (ld Leader) drain(ctx context.Context, l Lease, every time.Duration, done chan error) Lease {
	for {
		select {
		case err := <-done:
			done <- err
			return l
		case <-ld.After(every):
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), every)
		nl, err := ld.Leaser.AcquireLease(rctx, ld.Name, ld.Holder, ld.TTL)
		cancel()
		if err == nil && nl.Epoch == l.Epoch {
			l = nl
		}
	}
}

// LocalLeaser is a Leaser for replicas in one process (or a store that
// allows one process, as bbolt does): leases live in memory. The zero value
// is ready to use.
type LocalLeaser struct {
	Now func() time.Time // nil: time.Now

	mu     sync.Mutex
	leases map[string]Lease
}

var _ Leaser = (*LocalLeaser)(nil)

// AcquireLease implements Leaser.
func (m *LocalLeaser) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error) {
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	now := time.Now()
	if m.Now != nil {
		now = m.Now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.leases[name]
	if ok && cur.Holder != holder && now.Before(cur.Expires) {
		return Lease{}, &LeaseHeldError{Current: cur}
	}
	l := Lease{Name: name, Holder: holder, Epoch: cur.Epoch, Expires: now.Add(ttl)}
	if !ok || cur.Holder != holder {
		l.Epoch++
	}
	if m.leases == nil {
		m.leases = map[string]Lease{}
	}
	m.leases[name] = l
	return l, nil
}

// ReleaseLease implements Leaser.
func (m *LocalLeaser) ReleaseLease(_ context.Context, l Lease) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.leases[l.Name]; ok && cur.Holder == l.Holder && cur.Epoch == l.Epoch {
		cur.Expires = time.Time{} // the epoch stays: the next holder's is one more
		m.leases[l.Name] = cur
	}
	return nil
}

// Holds reports whether l.Holder holds l.Name at l.Epoch now (not
// released, not expired).
func (m *LocalLeaser) Holds(l Lease) bool {
	now := time.Now()
	if m.Now != nil {
		now = m.Now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.leases[l.Name]
	return ok && cur.Holder == l.Holder && cur.Epoch == l.Epoch && now.Before(cur.Expires)
}

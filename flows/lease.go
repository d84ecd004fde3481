package flows

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A Lease is the right of one replica (its Holder) to run the background
// work named Name (acceptance tracking, reminders, expiry, the outbox, bulk
// runs, resuming invitations) until Expires. Epoch grows by one each time
// the lease changes hands, never on a renewal, so a write fenced with an
// older epoch can be told from the current holder's.
type Lease struct {
	Name    string
	Holder  string
	Epoch   int64
	Expires time.Time
}

// LeaseBackground is the name of the lease that decides which replica runs
// invitebot's background work.
const LeaseBackground = "background"

// ErrLeaseHeld is returned (wrapped in a *LeaseHeldError) by
// Leaser.AcquireLease when another holder has the lease and it has not
// expired.
var ErrLeaseHeld = errors.New("lease held by another replica")

// ErrFenced is returned by a store write made with a fenced context
// (WithFence) when its lease is no longer held at that epoch: the replica
// lost the lease and must not write as the leader.
var ErrFenced = errors.New("lease lost: write fenced off")

// ErrLeaseLost is the cause (context.Cause) with which a Leader cancels
// the work's context when this replica lost the lease: calls in flight
// are then cut off at once, not given the stop grace.
var ErrLeaseLost = errors.New("background lease lost")

// LeaseHeldError says who holds a lease another replica asked for.
type LeaseHeldError struct{ Current Lease }

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("lease %q held by %s (epoch %d) until %s", e.Current.Name, e.Current.Holder, e.Current.Epoch, e.Current.Expires.UTC().Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrLeaseHeld) true.
func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

// Leaser hands out leases. Time is the store's own clock (the database
// server's for PostgreSQL), so replicas with skewed clocks agree.
type Leaser interface {
	// AcquireLease takes the lease name for holder for ttl from now, if it
	// is free, expired, or already holder's (a renewal: the epoch is kept).
	// A new holder gets the previous epoch plus one. Otherwise it returns a
	// *LeaseHeldError.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error)
	// ReleaseLease gives l up early if l.Holder still holds it at l.Epoch,
	// so another replica can take over without waiting for it to expire.
	// Releasing a lease no longer held is not an error.
	ReleaseLease(ctx context.Context, l Lease) error
}

const fenceKey ctxKey = 1

// WithFence returns ctx carrying lease l. A Store write made with such a
// context checks, in the same transaction, that l.Holder still holds l.Name
// at l.Epoch, and otherwise writes nothing and returns ErrFenced.
func WithFence(ctx context.Context, l Lease) context.Context {
	return context.WithValue(ctx, fenceKey, l)
}

// Fence returns the lease ctx is fenced with, if any.
func Fence(ctx context.Context) (Lease, bool) {
	l, ok := ctx.Value(fenceKey).(Lease)
	return l, ok
}

// LeaseSweeper is implemented by a Leaser whose leases outlive the
// process (a store's), so that the rows of leases nobody will take again
// can be deleted: a replica's liveness lease (replica/<name>) once the
// replica is gone, a bulk file's (bulk-file/<file ID>) once its run is
// over. Deleting a lease's row resets its epoch: the next holder gets
// epoch 1 again. That is safe for these names only, and the reasons are
// in sweepLeases; the background lease is never deleted.
type LeaseSweeper interface {
	// DeleteStaleLeases deletes at most limit leases whose name starts
	// with prefix and that have had no holder (released, or expired) for
	// at least age, on the store's clock, and returns how many it deleted.
	// A lease held and unexpired, or released or expired for less than
	// age, is kept, and so is LeaseBackground whatever the prefix.
	DeleteStaleLeases(ctx context.Context, prefix string, age time.Duration, limit int) (int, error)
}

package flowstest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
)

// TestStorePair runs the conformance suite through two handles on one
// database, as two replicas see it: open returns both, on a new, empty
// database for each subtest. Calls alternate between the handles, so
// concurrent creates and updates race across them, one handle's writes
// must be read through the other, and a lease taken through one is held
// against the other (if both implement flows.Leaser), and so is a sign-in
// record's lock (if both implement flows.SignInStore).
func TestStorePair(t *testing.T, open func(t *testing.T) (flows.Store, flows.Store)) {
	TestStore(t, func(t *testing.T) flows.Store {
		a, b := open(t)
		p := &pair{stores: [2]flows.Store{a, b}}
		la, okA := a.(flows.Leaser)
		lb, okB := b.(flows.Leaser)
		sa, okSA := a.(flows.SignInStore)
		sb, okSB := b.(flows.SignInStore)
		sp := &signInPair{stores: [2]flows.SignInStore{sa, sb}}
		switch {
		case okA && okB && okSA && okSB:
			return struct {
				*leaserPair
				*signInPair
			}{&leaserPair{pair: p, leasers: [2]flows.Leaser{la, lb}}, sp}
		case okA && okB:
			return &leaserPair{pair: p, leasers: [2]flows.Leaser{la, lb}}
		case okSA && okSB:
			return struct {
				*pair
				*signInPair
			}{p, sp}
		}
		return p
	})
}

// pair is a flows.Store that sends each call to the next of its stores.
type pair struct {
	stores [2]flows.Store
	next   atomic.Uint64
}

func (p *pair) store() flows.Store { return p.stores[(p.next.Add(1)-1)%2] }

func (p *pair) CreateInvitation(ctx context.Context, inv *flows.Invitation) (*flows.Invitation, error) {
	return p.store().CreateInvitation(ctx, inv)
}

func (p *pair) Invitation(ctx context.Context, id string) (*flows.Invitation, error) {
	return p.store().Invitation(ctx, id)
}

func (p *pair) UpdateInvitation(ctx context.Context, id string, fn func(*flows.Invitation) error) (*flows.Invitation, error) {
	return p.store().UpdateInvitation(ctx, id, fn)
}

func (p *pair) Invitations(ctx context.Context, f flows.InvitationFilter) ([]*flows.Invitation, error) {
	return p.store().Invitations(ctx, f)
}

func (p *pair) SaveGuest(ctx context.Context, g flows.Guest) error {
	return p.store().SaveGuest(ctx, g)
}

func (p *pair) Guest(ctx context.Context, objectID string) (*flows.Guest, error) {
	return p.store().Guest(ctx, objectID)
}

func (p *pair) AuditLog(ctx context.Context, since time.Time) ([]flows.Event, error) {
	return p.store().AuditLog(ctx, since)
}

// leaserPair is a pair whose stores are Leasers too.
type leaserPair struct {
	*pair
	leasers [2]flows.Leaser
	nextL   atomic.Uint64
}

func (p *leaserPair) leaser() flows.Leaser { return p.leasers[(p.nextL.Add(1)-1)%2] }

func (p *leaserPair) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (flows.Lease, error) {
	return p.leaser().AcquireLease(ctx, name, holder, ttl)
}

func (p *leaserPair) ReleaseLease(ctx context.Context, l flows.Lease) error {
	return p.leaser().ReleaseLease(ctx, l)
}

// signInPair is a flows.SignInStore that sends each call to the next of
// its stores: a lock taken through one is held against the other.
type signInPair struct {
	stores [2]flows.SignInStore
	next   atomic.Uint64
}

func (p *signInPair) store() flows.SignInStore { return p.stores[(p.next.Add(1)-1)%2] }

func (p *signInPair) SignInRecord(ctx context.Context, key string) ([]byte, error) {
	return p.store().SignInRecord(ctx, key)
}

func (p *signInPair) PutSignInRecord(ctx context.Context, key string, value []byte, expires time.Time) error {
	return p.store().PutSignInRecord(ctx, key, value, expires)
}

func (p *signInPair) TakeSignInRecord(ctx context.Context, key string) ([]byte, error) {
	return p.store().TakeSignInRecord(ctx, key)
}

func (p *signInPair) DeleteSignInRecord(ctx context.Context, key string) error {
	return p.store().DeleteSignInRecord(ctx, key)
}

func (p *signInPair) DeleteExpiredSignInRecords(ctx context.Context, before time.Time, limit int) (int, error) {
	return p.store().DeleteExpiredSignInRecords(ctx, before, limit)
}

func (p *signInPair) LockSignInRecord(ctx context.Context, key string) (flows.SignInLock, error) {
	return p.store().LockSignInRecord(ctx, key)
}

package flows

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Which replica runs an invitation's work.
//
// Replicas sharing a store each run the work their requests start (an
// invitation's steps, a lifecycle action, an outbox), and the leader also
// restarts unfinished work (Resume, the tracker's cycles). Without more,
// the leader could restart work that a live replica is running, and work
// a replica that died left behind would wait for the next change of
// leader. So every run of an invitation's work is claimed first, in one
// place (goOnce, through claim):
//
//   - Invitation.Runner names the replica that runs its work. A replica
//     claims an invitation by setting Runner to itself, in a compare-and-set
//     write, when Runner is empty, already its own, or a replica that is no
//     longer alive. Runs on one replica share the claim (counted in
//     Service.claims); the last to end clears Runner again.
//   - A replica is alive while it holds its liveness lease
//     (replicaLease(name)), which it renews every ReplicaTTL/3 from
//     StartReplica until Close. To ask whether another replica is alive, a
//     replica tries to acquire that replica's lease: if it is held, the
//     replica lives (or another one is adopting its work right now); if it
//     lapsed, the asking replica now holds it and adopts the work stamped
//     with that name.
//   - The writes of a claimed run check, in the same compare-and-set, that
//     Runner is still this replica (runnerStore); once another replica has
//     adopted the invitation they fail with ErrFenced, before the side
//     effect they record (see steps.go), so a replica that was paused
//     longer than the TTL cannot repeat a Graph call the adopter made.
//   - The leader runs Resume every ReplicaTTL: it starts every unfinished
//     invitation whose runner is not alive, so a dead replica's work goes
//     on within about two TTLs, not at the next change of leader.
//
// A process alone with its store (Config.Replica "") claims nothing: its
// runs are the only ones.

// replicaLease is the name of the liveness lease of replica name.
func replicaLease(name string) string { return "replica/" + name }

type claimKey struct{}

// withClaim marks ctx as a run that claimed invitation id.
func withClaim(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, claimKey{}, id)
}

// runnerStore fences the writes of claimed runs: an update of the claimed
// invitation made with a claimed context fails with ErrFenced once
// another replica is its runner.
type runnerStore struct {
	Store
	replica string
}

func (r runnerStore) UpdateInvitation(ctx context.Context, id string, fn func(*Invitation) error) (*Invitation, error) {
	if claimed, _ := ctx.Value(claimKey{}).(string); claimed != id {
		return r.Store.UpdateInvitation(ctx, id, fn)
	}
	return r.Store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		if cur.Runner != r.replica {
			return fmt.Errorf("invitation %s is run by replica %q now, not %q: %w", id, cur.Runner, r.replica, ErrFenced)
		}
		return fn(cur)
	})
}

// beat holds this replica's liveness lease: it takes it, then renews it
// every ReplicaTTL/3 until ctx is done, and releases it then. s.beating
// says whether the last attempt held it; s.firstBeat is closed after the
// first attempt.
func (s *Service) beat(ctx context.Context) {
	every := s.replicaTTL / 3
	var (
		held  Lease
		first = true
	)
	for {
		actx, cancel := context.WithTimeout(ctx, every)
		l, err := s.leaser.AcquireLease(actx, replicaLease(s.replica), s.replica, s.replicaTTL)
		cancel()
		switch {
		case ctx.Err() != nil:
		case err == nil:
			if !s.beating.Swap(true) && !first {
				s.log.Info("this replica's liveness lease is held again", "replica", s.replica)
			}
			held = l
		case errors.Is(err, ErrLeaseHeld):
			if s.beating.Swap(false) || first {
				// Another replica took the name after it lapsed (this
				// one was paused or cut off longer than the TTL) and
				// runs what this one had claimed; until the lease is
				// back, this replica claims nothing new.
				s.log.Error("this replica's liveness lease was taken over; its invitations in progress run elsewhere", "replica", s.replica, "err", err)
			}
		default:
			s.log.Warn("renew this replica's liveness lease", "replica", s.replica, "err", err)
		}
		if first {
			first = false
			close(s.firstBeat)
		}
		select {
		case <-ctx.Done():
			if held.Holder != "" {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				if err := s.leaser.ReleaseLease(rctx, held); err != nil {
					s.log.Warn("release this replica's liveness lease", "err", err)
				}
				cancel()
			}
			return
		case <-time.After(every):
		}
	}
}

// startBeat starts beat once, on the service's context.
func (s *Service) startBeat() {
	s.beatOnce.Do(func() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.beat(s.beatCtx)
		}()
	})
}

// alive reports whether replica name holds its liveness lease. If it
// does not, this replica takes the lease for ReplicaTTL, adopting the
// name's work: while it holds it, other replicas see name as alive and
// leave that work to this one.
func (s *Service) alive(ctx context.Context, name string) (bool, error) {
	_, err := s.leaser.AcquireLease(ctx, replicaLease(name), s.replica, s.replicaTTL)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, ErrLeaseHeld):
		return true, nil
	}
	return false, err
}

// claim claims invitation id for a run on this replica and returns the
// context the run uses and the function that ends the claim; ok is false
// if another live replica runs it (or this replica's liveness is not
// established: the leader then adopts it).
func (s *Service) claim(ctx context.Context, id string) (_ context.Context, release func(), ok bool) {
	if s.replica == "" {
		return ctx, func() {}, true
	}
	s.startBeat()
	select {
	case <-s.firstBeat:
	case <-ctx.Done():
		return ctx, nil, false
	}
	defer s.lock("claim:" + id)()
	s.mu.Lock()
	n := s.claims[id]
	if n > 0 {
		s.claims[id]++
	}
	s.mu.Unlock()
	if n == 0 {
		if !s.beating.Load() {
			s.log.WarnContext(ctx, "not running an invitation: this replica's liveness lease is not held", "invitation_id", id)
			return ctx, nil, false
		}
		if !s.takeRun(ctx, id) {
			return ctx, nil, false
		}
		s.mu.Lock()
		s.claims[id]++
		s.mu.Unlock()
	}
	return withClaim(ctx, id), func() { s.unclaim(id) }, true
}

// takeRun sets the invitation's Runner to this replica if it is free.
func (s *Service) takeRun(ctx context.Context, id string) bool {
	cur, err := s.store.Invitation(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			s.log.ErrorContext(ctx, "load invitation", "id", id, "err", err)
		}
		return false
	}
	if cur.Runner == s.replica {
		return true // recorded at creation; an adopter's later claim fences this run's writes
	}
	if cur.Runner != "" {
		live, err := s.alive(ctx, cur.Runner)
		if err != nil {
			s.log.WarnContext(ctx, "is the invitation's replica alive?", "invitation_id", id, "runner", cur.Runner, "err", err)
			return false
		}
		if live {
			s.log.DebugContext(ctx, "invitation runs on another replica", "invitation_id", id, "runner", cur.Runner)
			return false
		}
		s.log.InfoContext(ctx, "adopting the invitation of a replica that stopped", "invitation_id", id, "runner", cur.Runner)
	}
	_, err = s.store.UpdateInvitation(ctx, id, func(c *Invitation) error {
		switch c.Runner {
		case s.replica:
			return errUnchanged
		case cur.Runner:
			c.Runner = s.replica
			return nil
		}
		return ErrWrongState // another replica claimed it meanwhile
	})
	switch {
	case err == nil, errors.Is(err, errUnchanged):
		return true
	case errors.Is(err, ErrWrongState), ctx.Err() != nil:
	default:
		s.log.ErrorContext(ctx, "claim invitation", "invitation_id", id, "err", err)
	}
	return false
}

// unclaim ends one run's claim; the last run on this replica clears the
// invitation's Runner, so the next change (a button, the tracker) may
// start work on any replica. A run stopped because this process stops
// keeps the claim: the liveness lease, released on Close, tells the
// leader to adopt it. A run stopped because this replica stopped leading
// clears it too (on the process's own context), so the new leader adopts it.
func (s *Service) unclaim(id string) {
	defer s.lock("claim:" + id)()
	s.mu.Lock()
	s.claims[id]--
	last := s.claims[id] == 0
	if last {
		delete(s.claims, id)
	}
	s.mu.Unlock()
	if !last || s.ctx.Err() != nil {
		return
	}
	// On the process's own context: ctx may be the scope of a lease
	// this replica lost (cancelled, or fenced off), and the record must be
	// cleared all the same, or the invitation would wait for this live
	// replica.
	ctx := WithInvitationID(s.ctx, id)
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	_, err := s.store.UpdateInvitation(cctx, id, func(c *Invitation) error {
		if c.Runner != s.replica {
			return errUnchanged
		}
		c.Runner = ""
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		s.log.WarnContext(ctx, "release invitation", "invitation_id", id, "err", err)
	}
}

// runnable reports, for Resume, whether invitation inv's runner (if any)
// is this replica or not alive; alive caches the answers of one pass.
func (s *Service) runnable(ctx context.Context, inv *Invitation, alive map[string]bool) bool {
	if s.replica == "" || inv.Runner == "" || inv.Runner == s.replica {
		return true
	}
	live, ok := alive[inv.Runner]
	if !ok {
		var err error
		if live, err = s.alive(ctx, inv.Runner); err != nil {
			s.log.WarnContext(ctx, "is the invitation's replica alive?", "runner", inv.Runner, "err", err)
			live = true // ask again next time
		}
		alive[inv.Runner] = live
	}
	return !live
}

// adoptLoop runs resumeRuns every ReplicaTTL until ctx is done: work that
// a replica which stopped had claimed goes on here.
func (s *Service) adoptLoop(ctx context.Context) {
	if s.replica == "" {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.replicaTTL):
		}
		if _, err := s.resumeRuns(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "adopt invitations of stopped replicas", "err", err)
		}
	}
}

// Hold takes the lease name for this replica and keeps it, renewed every
// ReplicaTTL/3, until release is called: work that Slack may deliver to
// two replicas (a shared bulk file's event, redelivered to another one)
// then runs on one of them. It returns a *LeaseHeldError if another
// replica holds name; if that replica dies, the lease lapses within
// ReplicaTTL. A process alone with its store holds nothing: its callers'
// in-process guards suffice.
func (s *Service) Hold(ctx context.Context, name string) (release func(), err error) {
	if s.replica == "" {
		return func() {}, nil
	}
	l, err := s.leaser.AcquireLease(ctx, name, s.replica, s.replicaTTL)
	if err != nil {
		return nil, err
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(s.replicaTTL / 3):
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.replicaTTL/3)
			got, err := s.leaser.AcquireLease(cctx, name, s.replica, s.replicaTTL)
			cancel()
			if err != nil {
				s.log.WarnContext(ctx, "renew lease", "lease", name, "err", err)
				continue
			}
			l = got
		}
	}()
	return func() {
		close(stop)
		<-done
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := s.leaser.ReleaseLease(cctx, l); err != nil {
			s.log.WarnContext(ctx, "release lease", "lease", name, "err", err)
		}
	}, nil
}

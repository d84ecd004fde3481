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
		s.wg.Add(2)
		go func() {
			defer s.wg.Done()
			s.beat(s.beatCtx)
		}()
		go func() {
			defer s.wg.Done()
			for SleepContext(s.ctx, s.replicaTTL) == nil {
				s.ownRuns(s.ctx)
			}
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
// if another live replica runs it (busy: it may be claimed once that run
// ends), or this replica's liveness is not established (the leader then
// adopts it).
func (s *Service) claim(ctx context.Context, id string) (_ context.Context, release func(), ok, busy bool) {
	if s.replica == "" {
		return ctx, func() {}, true, false
	}
	s.startBeat()
	select {
	case <-s.firstBeat:
	case <-ctx.Done():
		return ctx, nil, false, false
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
			// Not alive to the others: leave the invitation to the
			// leader, without this replica's stamp from its creation
			// (which, once this replica is alive again, would keep the
			// leader off it).
			s.log.WarnContext(ctx, "not running an invitation: this replica's liveness lease is not held", "invitation_id", id)
			s.unstamp(id)
			return ctx, nil, false, false
		}
		if ok, busy := s.takeRun(ctx, id); !ok {
			return ctx, nil, false, busy
		}
		s.mu.Lock()
		s.claims[id]++
		s.mu.Unlock()
	}
	return withClaim(ctx, id), func() { s.unclaim(id) }, true, false
}

// takeRun sets the invitation's Runner to this replica if it is free;
// busy says another live replica has it.
func (s *Service) takeRun(ctx context.Context, id string) (ok, busy bool) {
	cur, err := s.store.Invitation(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			s.log.ErrorContext(ctx, "load invitation", "id", id, "err", err)
		}
		return false, false
	}
	if cur.Runner == s.replica {
		return true, false // recorded at creation; an adopter's later claim fences this run's writes
	}
	if cur.Runner != "" {
		live, err := s.alive(ctx, cur.Runner)
		if err != nil {
			s.log.WarnContext(ctx, "is the invitation's replica alive?", "invitation_id", id, "runner", cur.Runner, "err", err)
			return false, false
		}
		if live {
			s.log.DebugContext(ctx, "invitation runs on another replica", "invitation_id", id, "runner", cur.Runner)
			return false, true
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
		return true, false
	case errors.Is(err, ErrWrongState):
		return false, true // another replica claimed it meanwhile
	case ctx.Err() != nil:
	default:
		s.log.ErrorContext(ctx, "claim invitation", "invitation_id", id, "err", err)
	}
	return false, false
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
	s.unstamp(id)
}

// unstamp clears invitation id's Runner if it is this replica, on the
// process's own context (the run's may be the scope of a lease this
// replica lost: cancelled, or fenced off), trying a few times: a stamp
// left on a live replica keeps the others off the invitation until
// ownRuns finds it.
func (s *Service) unstamp(id string) {
	ctx := WithInvitationID(s.ctx, id)
	var err error
	for attempt := range 3 {
		if attempt > 0 && SleepContext(ctx, time.Second) != nil {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		_, err = s.store.UpdateInvitation(cctx, id, func(c *Invitation) error {
			if c.Runner != s.replica {
				return errUnchanged
			}
			c.Runner = ""
			return nil
		})
		cancel()
		if err == nil || errors.Is(err, errUnchanged) {
			return
		}
	}
	s.log.ErrorContext(ctx, "release invitation", "invitation_id", id, "err", err)
}

// ownRuns looks for unfinished invitations stamped with this replica
// that no run here claims (a stamp whose release failed, or a run that
// ended on a store error): it runs those that can go on and releases those
// that wait for a person. Every replica does it every ReplicaTTL, since
// the leader leaves a live replica's invitations alone.
func (s *Service) ownRuns(ctx context.Context) {
	invs, err := s.store.Invitations(ctx, InvitationFilter{Unfinished: true})
	if err != nil {
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "list this replica's invitations", "err", err)
		}
		return
	}
	for _, inv := range invs {
		s.mu.Lock()
		claimed := s.claims[inv.ID] > 0 || s.running[inv.ID]
		s.mu.Unlock()
		switch {
		case inv.Runner != s.replica || claimed:
		case inv.State.Waiting():
			s.unstamp(inv.ID)
		default:
			s.log.InfoContext(ctx, "resuming an invitation this replica had left", "invitation", inv)
			s.start(ctx, inv.ID)
		}
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
// then runs on one of them. The work runs under the returned context,
// which ends if the lease is lost (another replica took it after a
// lapse, or renewals failed for two thirds of the TTL), so that the two
// never run on. It returns a *LeaseHeldError if another replica holds
// name; if that replica dies, the lease lapses within ReplicaTTL. A
// process alone with its store holds nothing: its callers' in-process
// guards suffice.
func (s *Service) Hold(ctx context.Context, name string) (held context.Context, release func(), err error) {
	if s.replica == "" {
		return ctx, func() {}, nil
	}
	l, err := s.leaser.AcquireLease(ctx, name, s.replica, s.replicaTTL)
	if err != nil {
		return nil, nil, err
	}
	held, lose := context.WithCancelCause(ctx)
	every := s.replicaTTL / 3
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		lastOK := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			began := time.Now()
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), every)
			got, err := s.leaser.AcquireLease(cctx, name, s.replica, s.replicaTTL)
			cancel()
			switch {
			case err == nil:
				l, lastOK = got, began
				continue
			case errors.Is(err, ErrLeaseHeld), began.Sub(lastOK) >= 2*every:
				s.log.ErrorContext(ctx, "lease lost: stopping its work", "lease", name, "err", err)
				lose(fmt.Errorf("lease %s lost: %w", name, err))
				return
			}
			s.log.WarnContext(ctx, "renew lease; trying again", "lease", name, "err", err)
		}
	}()
	return held, func() {
		close(stop)
		<-done
		lose(context.Canceled)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := s.leaser.ReleaseLease(cctx, l); err != nil {
			s.log.WarnContext(ctx, "release lease", "lease", name, "err", err)
		}
	}, nil
}

// Sweeping the leases that replicas leave behind: every process start adds
// a liveness lease (replicaLease) and every bulk file shared adds one
// (bot's "bulk-file/<file ID>", through Hold), and a released lease keeps
// its row (with its epoch). The leader deletes those that have had no
// holder for LeaseSweepAge, at most leaseSweepBatches batches of
// leaseSweepBatch per tracking cycle, each its own short statement.
//
// Deleting a row resets the lease's epoch (the next holder gets 1 again),
// which is safe for these names because their epoch fences nothing:
//
//   - A replica's name (host, process ID and a random part) is new at each
//     process start and never reused, so a row replica/<name> held by
//     <name> is that one process's. Its work is fenced by the invitations'
//     Runner (runnerStore), not by the lease's epoch; the epoch is only
//     used by the replica's own renewals and release. If an invitation
//     still names a replica whose row was deleted, alive takes the lease
//     afresh and answers "not alive", as it would on the expired row.
//   - A bulk file's lease only excludes a second run while it is held: the
//     run's writes are not fenced with it (Hold does not use WithFence),
//     and a released lease is free to take, whether its row is there or
//     not.
//
// The background lease, whose epoch fences the leader's writes
// (WithFence), is never deleted, nor is any lease under another prefix.
const (
	LeaseSweepAge     = time.Hour
	leaseSweepBatch   = 500
	leaseSweepBatches = 10
)

// sweptLeases are the name prefixes of the leases sweepLeases deletes.
var sweptLeases = []string{replicaLease(""), "bulk-file/"}

// sweepLeases deletes the leases of sweptLeases that have had no holder
// for LeaseSweepAge, if the store keeps leases. It runs in each tracking
// cycle, so on the replica that runs the background work only. It returns
// how many it deleted.
func (s *Service) sweepLeases(ctx context.Context) int {
	if s.sweeper == nil {
		return 0
	}
	total := 0
	for _, prefix := range sweptLeases {
		for range leaseSweepBatches {
			n, err := s.sweeper.DeleteStaleLeases(ctx, prefix, LeaseSweepAge, leaseSweepBatch)
			total += n
			if err != nil {
				if ctx.Err() == nil {
					s.log.WarnContext(ctx, "delete stale leases", "prefix", prefix, "err", err)
				}
				break
			}
			if n < leaseSweepBatch {
				break
			}
		}
	}
	return total
}

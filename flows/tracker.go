package flows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// TrackStats is what one tracking cycle did.
type TrackStats struct {
	Pending  int // pending invitations checked
	Requests int // directory requests (JSON batches of at most MaxStatesPerRequest)
	Accepted int
	Removed  int // deleted in Entra
	Reminded int
	Untimely int // users whose state could not be read this cycle (retried next cycle)
	// ExpiryWarned and Expired count sponsors asked about an ending access,
	// and accesses ended.
	ExpiryWarned, Expired int
	// Deferred counts invitations whose refused writes were retried.
	Deferred int
	// SignInsSwept counts expired sign-in records deleted (connect links
	// and sign-ins in progress).
	SignInsSwept int
	// LeasesSwept counts leases deleted: replicas' liveness leases and
	// bulk files' leases no longer held (sweepLeases).
	LeasesSwept int
	Duration    time.Duration
}

// errUnchanged tells UpdateInvitation that nothing needs writing.
var errUnchanged = errors.New("unchanged")

// Track runs one acceptance-tracking cycle: it delivers notices left in
// outboxes, reads the externalUserState of every pending invitation's guest
// in JSON batches of MaxStatesPerRequest (so ⌈N/20⌉ requests for N pending),
// and records what changed: acceptance (then the inviter is told once),
// deletion in Entra (a 404 that persists for MissingGrace), null state (no
// longer tracked), and reminders. Only invitations that changed are
// written. Interactive directory calls go first: each batch waits until
// none is in flight and until Graph's throttling window has passed.
func (s *Service) Track(ctx context.Context) (TrackStats, error) {
	began := time.Now()
	s.resumeSignIns(ctx) // connected meanwhile, or waited too long
	var st TrackStats
	st.SignInsSwept = s.sweepSignIns(ctx)
	st.LeasesSwept = s.sweepLeases(ctx)
	invs, err := s.store.Invitations(ctx, InvitationFilter{Tracked: true})
	if err != nil {
		return st, fmt.Errorf("track: %w", err)
	}
	// The gauge is set from the listing, before this cycle changes
	// anything (each change then moves it by one).
	pending := 0
	for _, inv := range invs {
		if inv.Pending() {
			pending++
		}
	}
	s.obs.Pending(pending)
	byUser := map[string][]string{} // object ID → invitation IDs
	for _, inv := range invs {
		ictx := WithInvitationID(ctx, inv.ID)
		if inv.State == StateAwaitingApproval && inv.Approval != nil && s.now().After(inv.Approval.ExpiresAt) {
			if err := s.expireApproval(ctx, inv.ID); err != nil {
				s.log.ErrorContext(ictx, "expire approval", "err", err)
			}
			continue
		}
		if inv.Expiry != nil && live(inv) && inv.Action == nil {
			did, err := s.checkExpiry(ctx, inv.ID)
			if err != nil {
				s.log.ErrorContext(ictx, "check expiry", "err", err)
			}
			switch did {
			case string(ActionExpire):
				st.Expired++
				continue
			case string(NoticeExpiring):
				st.ExpiryWarned++
			}
		}
		switch {
		case inv.Action != nil:
			s.startAction(ctx, inv.ID) // resumes an action a restart interrupted
		case len(inv.Outbox) > 0:
			s.flushLater(ctx, inv.ID) // Slack's trouble must not hold up tracking
		}
		if s.deferredDue(inv) {
			st.Deferred++
			s.startDeferred(ctx, inv.ID) // writes Entra refused (403) to a new guest
		}
		if inv.Pending() {
			byUser[inv.ObjectID] = append(byUser[inv.ObjectID], inv.ID)
			st.Pending++
		}
	}
	ids := make([]string, 0, len(byUser))
	for id := range byUser {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		sem  = make(chan struct{}, s.trackConcurrency)
		errs []error
	)
	for chunk := range slices.Chunk(ids, MaxStatesPerRequest) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			cs, err := s.trackChunk(ctx, chunk, byUser)
			mu.Lock()
			defer mu.Unlock()
			st.Requests += cs.Requests
			st.Accepted += cs.Accepted
			st.Removed += cs.Removed
			st.Reminded += cs.Reminded
			st.Untimely += cs.Untimely
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	st.Duration = time.Since(began)
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if len(errs) > 0 {
		return st, fmt.Errorf("track: %d of %d batches failed; first: %w", len(errs), (len(ids)+MaxStatesPerRequest-1)/MaxStatesPerRequest, errs[0])
	}
	return st, nil
}

// trackChunk reads the states of at most MaxStatesPerRequest users and
// applies them. Throttled items are retried alone, after the longest
// Retry-After; a throttled or failing batch is retried whole within the
// transient budget.
func (s *Service) trackChunk(ctx context.Context, ids []string, byUser map[string][]string) (TrackStats, error) {
	var st TrackStats
	pending := ids
	for attempt := 1; len(pending) > 0; attempt++ {
		if err := s.gate.wait(ctx, s.now, s.pauser(WaitTrackerGate)); err != nil {
			return st, err
		}
		st.Requests++
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		res, err := s.raw.ExternalStates(cctx, pending)
		cancel()
		if err != nil {
			s.gate.throttled(err, s.now())
			var de *DirectoryError
			if ctx.Err() == nil && errors.As(err, &de) && de.Temporary() && attempt < s.transient.Attempts {
				if !de.Throttled() { // a 429's window is the gate's
					if err := s.pause(ctx, WaitTransient, s.transient.Delay(attempt, 0)); err != nil {
						return st, err
					}
				}
				continue
			}
			st.Untimely += len(pending)
			return st, err
		}
		var (
			retry []string
			wait  time.Duration
		)
		seen := make(map[string]bool, len(res))
		for _, r := range res {
			seen[r.UserID] = true
			var de *DirectoryError
			switch {
			case r.Err == nil:
				s.observeAll(ctx, byUser[r.UserID], r, false, &st)
			case errors.Is(r.Err, ErrNotFound):
				s.observeAll(ctx, byUser[r.UserID], r, true, &st)
			case errors.As(r.Err, &de) && de.Temporary():
				retry = append(retry, r.UserID)
				if de.Throttled() {
					wait = max(wait, de.RetryAfter)
				}
			default:
				st.Untimely++
				s.log.Warn("read external user state", "object_id", r.UserID, "err", r.Err)
			}
		}
		for _, id := range pending {
			if !seen[id] {
				st.Untimely++
			}
		}
		if len(retry) == 0 {
			break
		}
		if attempt >= s.transient.Attempts {
			st.Untimely += len(retry)
			break
		}
		if wait > 0 {
			s.gate.throttled(&DirectoryError{Status: 429, RetryAfter: wait}, s.now())
		} else if err := s.pause(ctx, WaitTransient, s.transient.Delay(attempt, 0)); err != nil {
			return st, err
		}
		pending = retry
	}
	return st, nil
}

// observeAll records r for every pending invitation of the user.
func (s *Service) observeAll(ctx context.Context, invIDs []string, r ExternalState, missing bool, st *TrackStats) {
	for _, id := range invIDs {
		ctx := WithInvitationID(ctx, id)
		kind, err := s.observe(ctx, id, r, missing)
		if err != nil {
			s.log.ErrorContext(ctx, "record external user state", "id", id, "err", err)
			continue
		}
		switch kind {
		case NoticeAccepted:
			st.Accepted++
		case NoticeRemoved:
			st.Removed++
		case NoticeReminder:
			st.Reminded++
		}
	}
}

// observe applies one read of a guest's state to invitation id. The notice
// it causes is recorded in the same write, then delivered.
func (s *Service) observe(ctx context.Context, id string, r ExternalState, missing bool) (NoticeKind, error) {
	var kind NoticeKind
	got, err := s.store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		kind = ""
		if !cur.Pending() || cur.Action != nil {
			return errUnchanged
		}
		now := s.now()
		t := &cur.Tracking
		if fresh := now.Sub(cur.InvitedAt) < s.missingGrace; fresh && (r.State == "" || r.State == ExternalAccepted) &&
			(t.ResetAt.Equal(cur.InvitedAt) || cur.Request.ConvertFrom != "") && (r.ChangedAt.IsZero() || r.ChangedAt.Before(cur.InvitedAt)) {
			// Right after a reset or a conversion Entra may still report the
			// state from before it (replication): not a new acceptance.
			return errUnchanged
		}
		switch {
		case missing:
			if t.MissingSince.IsZero() {
				t.MissingSince = now
				return nil
			}
			if now.Sub(t.MissingSince) < s.missingGrace {
				return errUnchanged
			}
			kind = NoticeRemoved
			s.setState(cur, StateRemoved, ActorBot, "deleted in Entra",
				fmt.Sprintf("not found since %s", t.MissingSince.UTC().Format(time.RFC3339)))
		case r.State == ExternalAccepted:
			kind = NoticeAccepted
			t.External, t.MissingSince = ExternalAccepted, time.Time{}
			t.AcceptedAt = r.ChangedAt
			if t.AcceptedAt.IsZero() {
				t.AcceptedAt = now
			}
			s.setState(cur, StateAccepted, ActorBot, "accepted", "")
		case r.State == "":
			t.External, t.MissingSince = TrackNone, time.Time{}
			cur.UpdatedAt = now
			cur.History = append(cur.History, s.event(cur, ActorBot, "not tracked",
				"externalUserState is null: not an invitation that can be accepted"))
			return nil
		default:
			changed := !t.MissingSince.IsZero() || t.External != r.State
			t.External, t.MissingSince = r.State, time.Time{}
			sent := cur.InvitedAt
			if sent.IsZero() {
				sent = cur.CreatedAt
			}
			remind := s.remindAfter
			if p := s.Policy().RemindAfter; p != 0 {
				remind = p
			}
			if remind > 0 && t.RemindedAt.IsZero() && now.Sub(sent) >= remind {
				kind, t.RemindedAt, changed = NoticeReminder, now, true
				cur.History = append(cur.History, s.event(cur, ActorBot, "reminder", ""))
			}
			if !changed {
				return errUnchanged
			}
		}
		if kind != "" {
			cur.Outbox = append(cur.Outbox, Outgoing{Kind: kind, At: now})
		}
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if kind != "" {
		s.log.InfoContext(ctx, "guest "+string(kind), "invitation", got)
		if kind != NoticeReminder {
			s.syncGuest(ctx, got)
		}
		s.flushLater(ctx, id)
	}
	return kind, nil
}

// trackLoop runs Track every poll interval until ctx is done; with no
// poll interval (negative) it only waits (tests run Track themselves).
func (s *Service) trackLoop(ctx context.Context) {
	if s.pollInterval <= 0 {
		<-ctx.Done()
		return
	}
	for {
		st, err := s.Track(ctx)
		if ctx.Err() != nil {
			return
		}
		lvl := "debug"
		if err != nil {
			lvl = "warn"
		} else if st.Accepted+st.Removed+st.Reminded > 0 {
			lvl = "info"
		}
		args := []any{"pending", st.Pending, "requests", st.Requests, "accepted", st.Accepted,
			"removed", st.Removed, "reminded", st.Reminded, "unread", st.Untimely, "sign_ins_swept", st.SignInsSwept, "took", st.Duration.Round(time.Millisecond)}
		switch lvl {
		case "warn":
			s.log.Warn("tracking cycle", append(args, "err", err)...)
		case "info":
			s.log.Info("tracking cycle", args...)
		default:
			s.log.Debug("tracking cycle", args...)
		}
		if SleepContext(ctx, s.pollInterval) != nil { // real time: not the retry clock
			return
		}
	}
}

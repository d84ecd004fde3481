package flows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// run drives invitation id until it finishes, waits for a person, fails, or
// the service stops (then the record keeps its state for the next Start).
// Its log lines carry the invitation's ID in their context.
func (s *Service) run(ctx context.Context, id string) {
	ctx = WithInvitationID(ctx, id)
	for ctx.Err() == nil {
		inv, err := s.store.Invitation(ctx, id)
		if err != nil {
			s.log.ErrorContext(ctx, "load invitation", "id", id, "err", err)
			return
		}
		if (inv.State.Terminal() && !inv.SponsorDue) || inv.State.Waiting() {
			return
		}
		from, began := inv.State, time.Now()
		err = s.step(ctx, inv)
		if ctx.Err() != nil {
			return
		}
		s.obs.Step(from, time.Since(began), err)
		if err != nil {
			s.fail(ctx, inv, err)
			return
		}
	}
}

// step performs the side effect that follows inv's state and records the
// next state.
func (s *Service) step(ctx context.Context, inv *Invitation) error {
	if inv.State.Terminal() && inv.SponsorDue {
		return s.recordSponsor(ctx, inv)
	}
	switch inv.State {
	case StateRequested:
		return s.advance(ctx, inv, StateChecking, "checking directory", "", nil)
	case StateChecking:
		if inv.Request.ConvertFrom != "" {
			return s.checkConvert(ctx, inv)
		}
		return s.check(ctx, inv)
	case StateInviting:
		return s.invite(ctx, inv)
	case StateInvited:
		return s.setAttributes(ctx, inv)
	case StateAttributesSet:
		return s.addGroups(ctx, inv)
	case StateGroupsAdded:
		return s.provision(ctx, inv)
	case StateProvisioned:
		return s.notifyDone(ctx, inv)
	}
	return fmt.Errorf("invitation %s: no step for state %q", inv.ID, inv.State)
}

// advance moves inv from its current state to `to`, applying mut in the same
// write, and tells the inviter (best effort).
func (s *Service) advance(ctx context.Context, inv *Invitation, to State, action, detail string, mut func(*Invitation)) error {
	from := inv.State
	got, err := s.store.UpdateInvitation(ctx, inv.ID, func(cur *Invitation) error {
		if cur.State != from {
			return fmt.Errorf("advance %s→%s: state is %s: %w", from, to, cur.State, ErrWrongState)
		}
		if mut != nil {
			mut(cur)
		}
		s.setState(cur, to, ActorBot, action, detail)
		return nil
	})
	if err != nil {
		return err
	}
	*inv = *got
	s.log.InfoContext(ctx, "invitation step", "invitation", got, "from", from)
	if to.Terminal() && len(got.Outbox) > 0 { // queued by setState: its origin's completion
		s.flushLater(ctx, got.ID)
	}
	if to != StateNotified && !to.Waiting() {
		s.tell(ctx, Notice{Kind: NoticeProgress, Invitation: got.Clone()})
	}
	return nil
}

// tell delivers a best-effort notice: failures are logged, not retried.
func (s *Service) tell(ctx context.Context, n Notice) {
	if n.Invitation != nil && !n.Invitation.Origin.Dialog() {
		return // no dialog to show progress in
	}
	cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	if _, err := s.note.Notify(cctx, n); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "notify", "kind", n.Kind, "invitation", n.Invitation, "err", err)
	}
}

// waiting returns an onWait callback that tells the inviter about retries.
func (s *Service) waiting(ctx context.Context, inv *Invitation) func(time.Duration) {
	return func(d time.Duration) {
		s.log.InfoContext(ctx, "retrying directory call", "invitation", inv, "in", d)
		s.tell(ctx, Notice{Kind: NoticeRetrying, Invitation: inv.Clone(), RetryIn: d})
	}
}

func (s *Service) check(ctx context.Context, inv *Invitation) error {
	if s.Domains() == nil {
		if err := s.RefreshDomains(ctx); err != nil {
			return err
		}
	}
	if IsInternal(inv.Request.Email, s.Domains()) {
		return s.failWith(ctx, inv, &Failure{Code: FailInternalUser, Step: inv.State})
	}
	var users []DirectoryUser
	err := s.retryDirectory(ctx, false, s.waiting(ctx, inv), func(ctx context.Context) error {
		var err error
		users, err = s.dir.FindUsers(ctx, inv.Request.Email, inv.Request.UserType == UserTypeMember)
		return err
	})
	if err != nil {
		return err
	}
	if len(users) == 0 {
		return s.toInviting(ctx, inv, "no existing user", "")
	}
	if !inv.Origin.PicksMatches() {
		return s.adopt(ctx, inv, users)
	}
	err = s.advance(ctx, inv, StateAwaitingPick, "existing users found", fmt.Sprintf("%d match(es)", len(users)),
		func(cur *Invitation) { cur.Matches = users })
	if err != nil {
		return err
	}
	// The pick dialog is the only way on: deliver it (with retries). If
	// Slack will not show it, end the invitation rather than leave the
	// address blocked by a choice nobody can make.
	if _, err := s.deliver(ctx, Notice{Kind: NoticeMatches, Invitation: inv.Clone()}); err != nil && ctx.Err() == nil {
		_, cerr := s.store.UpdateInvitation(ctx, inv.ID, func(cur *Invitation) error {
			if cur.State != StateAwaitingPick {
				return ErrWrongState // picked or cancelled meanwhile
			}
			cur.Failure = &Failure{Code: FailNotify, Step: cur.State, Retryable: true,
				Message: "Slack did not show the existing accounts to pick from; start again"}
			s.setState(cur, StateFailed, ActorBot, "failed", "notify_failed: pick dialog not shown")
			return nil
		})
		if cerr == nil {
			got, _ := s.store.Invitation(ctx, inv.ID)
			if got != nil {
				_, _ = s.deliver(ctx, Notice{Kind: NoticeFailed, Invitation: got.Clone()})
			}
		}
	}
	return nil
}

// adopt settles a bulk row whose address exists in the directory, where
// nobody is there to pick: the one guest with exactly that address is
// taken as the inviter would pick it; anything else (several accounts, an
// internal account, a match on another address) fails the row, naming
// what a person must choose between.
func (s *Service) adopt(ctx context.Context, inv *Invitation, users []DirectoryUser) error {
	if len(users) == 1 && users[0].UserType == UserTypeGuest && strings.EqualFold(users[0].Mail, inv.Request.Email) {
		u := users[0]
		return s.advance(ctx, inv, StateInvited, "adopted existing guest", u.ID, func(cur *Invitation) {
			cur.Matches, cur.ObjectID, cur.Picked = users, u.ID, true
			cur.Tracking.External = cmp.Or(u.ExternalUserState, TrackNone)
		})
	}
	kinds := make([]string, len(users))
	for i, u := range users {
		kinds[i] = strings.ToLower(cmp.Or(string(u.UserType), "member"))
	}
	return s.failWith(ctx, inv, &Failure{Code: FailNeedsPick, Message: fmt.Sprintf(
		"%d existing account(s) (%s) match this address; invite it from /invite-guest to choose", len(users), strings.Join(kinds, ", "))})
}

// invite POSTs the invitation. The attempt counter is written before each
// POST. A POST that failed ambiguously (5xx, lost answer) may still have
// created the guest; re-POSTing returns the same user, which is harmless
// when Microsoft's email is suppressed (it only yields a fresh redeem link)
// but would send a second email otherwise. So with DeliveryMicrosoftEmail a
// retry first looks the address up and adopts the user it finds.
func (s *Service) invite(ctx context.Context, inv *Invitation) error {
	first := true
	snd, err := s.sender(ctx, inv.Inviter)
	if errors.Is(err, ErrSignInNeeded) {
		return s.awaitSignIn(ctx, inv, err)
	} else if err != nil {
		return err
	}
	for {
		if inv.InviteAttempt > 0 && inv.Request.Delivery == DeliveryMicrosoftEmail && inv.Request.ConvertFrom == "" {
			u, err := s.findInvited(ctx, inv)
			if err != nil {
				return err
			}
			if u != nil {
				return s.advance(ctx, inv, StateInvited, "invitation recovered",
					"an earlier attempt had reached Graph; not re-sent", func(cur *Invitation) { cur.ObjectID = u.ID })
			}
		}
		got, err := s.store.UpdateInvitation(ctx, inv.ID, func(cur *Invitation) error {
			if cur.State != StateInviting {
				return ErrWrongState
			}
			cur.InviteAttempt++
			return nil
		})
		if err != nil {
			return err
		}
		*inv = *got
		r := inv.Request
		existing := ""
		if r.ConvertFrom != "" {
			existing = inv.ObjectID // resolved by checkConvert
		}
		if err := s.invites.wait(ctx); err != nil {
			return err
		}
		if first {
			// Graph asked everyone to wait (a 429 another call got); later
			// attempts wait out their own Retry-After below.
			if err := s.gate.throttleWait(ctx, s.now, s.pauser(WaitThrottleWindow)); err != nil {
				return err
			}
			first = false
		}
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		res, err := s.sendInvite(cctx, &snd, Invite{
			Email: r.Email, DisplayName: r.DisplayName, RedirectURL: r.RedirectURL,
			SendMessage: r.Delivery == DeliveryMicrosoftEmail, Message: r.Message, CC: r.CC, UserType: r.UserType,
			ExistingUserID: existing,
		})
		cancel()
		if errors.Is(err, ErrSignInNeeded) {
			return s.awaitSignIn(ctx, inv, err) // nothing was sent
		}
		if err == nil {
			return s.advance(ctx, inv, StateInvited, "invited", "invitation "+res.InvitationID+" "+snd.String(),
				func(cur *Invitation) {
					cur.ObjectID, cur.RedeemURL, cur.InvitedAt = res.UserID, res.RedeemURL, s.now()
					cur.UserType = res.UserType
					cur.Tracking.External = ExternalPending
				})
		}
		var de *DirectoryError
		if ctx.Err() != nil || !errors.As(err, &de) || !de.Temporary() || inv.InviteAttempt >= s.transient.Attempts {
			return err
		}
		wait := s.transient.Delay(inv.InviteAttempt, de.RetryAfter)
		s.waiting(ctx, inv)(wait)
		if err := s.pause(ctx, retryReason(de), wait); err != nil {
			return err
		}
	}
}

// findInvitedLookups is how many times findInvited looks before it
// concludes that no earlier attempt created the user: a user created
// moments ago may not be visible to a query yet (replication delay).
const findInvitedLookups = 3

// findInvited looks for a user created by an earlier invitation attempt.
func (s *Service) findInvited(ctx context.Context, inv *Invitation) (*DirectoryUser, error) {
	for attempt := 1; ; attempt++ {
		var users []DirectoryUser
		err := s.retryDirectory(ctx, false, s.waiting(ctx, inv), func(ctx context.Context) error {
			var err error
			users, err = s.dir.FindUsers(ctx, inv.Request.Email, false)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			if strings.EqualFold(u.Mail, inv.Request.Email) {
				return &u, nil
			}
		}
		if attempt >= findInvitedLookups {
			return nil, nil
		}
		if err := s.pause(ctx, WaitReplication, s.replication.Delay(attempt, 0)); err != nil {
			return nil, err
		}
	}
}

func (s *Service) setAttributes(ctx context.Context, inv *Invitation) error {
	attrs := inv.Request.Attributes
	if attrs.IsZero() {
		return s.advance(ctx, inv, StateAttributesSet, "no attributes to set", "", nil)
	}
	err := s.retryDirectory(ctx, true, s.waiting(ctx, inv), func(ctx context.Context) error {
		return s.dir.UpdateUser(ctx, inv.ObjectID, attrs)
	})
	if s.deferrable(err) {
		// A role scoped to a dynamic unit of guests covers the new guest
		// only once it has joined the unit: retried in the background.
		return s.advance(ctx, inv, StateAttributesSet, "attributes pending",
			"Entra refused (403); retried in the background: "+redact(err, inv.Request.Email),
			func(cur *Invitation) { s.deferWrite(cur, func(d *Deferred) { d.Attributes = true }) })
	}
	if err != nil {
		return err
	}
	return s.advance(ctx, inv, StateAttributesSet, "attributes set", "", nil)
}

// addGroups adds the guest to each requested group, recording each add so a
// restart does not repeat it (a repeat would be harmless: "already a
// member" is success).
func (s *Service) addGroups(ctx context.Context, inv *Invitation) error {
	for _, gid := range inv.Request.Groups {
		if slices.Contains(inv.GroupsAdded, gid) {
			continue
		}
		err := s.retryDirectory(ctx, true, s.waiting(ctx, inv), func(ctx context.Context) error {
			return s.dir.AddGroupMember(ctx, gid, inv.ObjectID)
		})
		if err != nil {
			return fmt.Errorf("add to group %s: %w", gid, err)
		}
		got, err := s.store.UpdateInvitation(ctx, inv.ID, func(cur *Invitation) error {
			cur.GroupsAdded = append(cur.GroupsAdded, gid)
			cur.History = append(cur.History, s.event(cur, ActorBot, "added to group", s.Policy().GroupName(gid)))
			return nil
		})
		if err != nil {
			return err
		}
		*inv = *got
	}
	return s.advance(ctx, inv, StateGroupsAdded, "groups done", fmt.Sprintf("%d group(s)", len(inv.GroupsAdded)), nil)
}

func (s *Service) provision(ctx context.Context, inv *Invitation) error {
	r := inv.Request
	now := s.now()
	state := StateProvisioned
	g := Guest{
		ObjectID: inv.ObjectID, Email: r.Email, DisplayName: r.DisplayName, UserType: r.UserType,
		InvitedBy: inv.Inviter, Groups: inv.GroupsAdded, RedirectURL: r.RedirectURL, Delivery: r.Delivery,
		State: state, Existing: inv.Picked, InvitationID: inv.ID, CreatedAt: now, UpdatedAt: now,
	}
	if old, err := s.store.Guest(ctx, inv.ObjectID); err == nil {
		g.CreatedAt = old.CreatedAt
		g.Groups = mergeGroups(old.Groups, g.Groups)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	if err := s.store.SaveGuest(ctx, g); err != nil {
		return err
	}
	return s.advance(ctx, inv, StateProvisioned, "provisioned", "", func(cur *Invitation) {
		cur.SponsorDue = true // recorded after the DM (recordSponsor)
		if d := cur.Request.ExpiresIn; d > 0 && cur.Expiry == nil {
			cur.Expiry = &Expiry{At: now.Add(d), Period: d}
		}
	})
}

// recordSponsor records the inviter as the guest's sponsor once the
// inviter has their DM: in Entra (see sponsor; a 403 is retried in the
// background as a deferred write), on the guest and on the invitation,
// whose SponsorDue it clears.
func (s *Service) recordSponsor(ctx context.Context, inv *Invitation) error {
	sp, pending := s.sponsor(ctx, inv)
	if ctx.Err() != nil {
		return ctx.Err() // stopping: the next start records it
	}
	g, err := s.store.Guest(ctx, inv.ObjectID)
	switch {
	case err == nil:
		g.Sponsor = sp
		if err := s.store.SaveGuest(ctx, *g); err != nil {
			return err
		}
	case !errors.Is(err, ErrNotFound):
		return err
	}
	detail := "sponsor " + sp.SlackUser + " set in Entra"
	if !sp.InEntra {
		detail = "sponsor " + sp.SlackUser + " recorded here only: " + sp.Note
	}
	got, err := s.store.UpdateInvitation(ctx, inv.ID, func(cur *Invitation) error {
		if !cur.SponsorDue {
			return ErrWrongState
		}
		cur.Sponsor, cur.SponsorDue = sp, false
		if pending {
			s.deferWrite(cur, func(d *Deferred) { d.SponsorID = sp.ObjectID })
		}
		cur.History = append(cur.History, s.event(cur, ActorBot, "sponsor recorded", detail))
		return nil
	})
	if err != nil {
		return err
	}
	*inv = *got
	return nil
}

// sponsor maps the inviter to the guest's sponsor: always recorded in the
// store, and set in Entra (the sponsors relationship) when the inviter's
// Slack email maps to an internal account and the tenant takes it. A
// failure here is noted, never fatal: the guest is invited either way.
// pending reports a sponsor write Entra refused with 403, to be retried in
// the background.
func (s *Service) sponsor(ctx context.Context, inv *Invitation) (sp *Sponsor, pending bool) {
	sp = &Sponsor{SlackUser: inv.Inviter.UserID}
	acct, err := s.sponsorAccount(ctx, inv.Inviter.UserID)
	sp.Email, sp.ObjectID = acct.email, acct.objectID
	switch {
	case err != nil:
		sp.Note = err.Error()
		return sp, false
	case sp.ObjectID == "":
		sp.Note = "no internal Entra account has the inviter's Slack email"
		return sp, false
	}
	err = s.retryDirectory(ctx, true, nil, func(ctx context.Context) error {
		return s.dir.AddSponsor(ctx, inv.ObjectID, sp.ObjectID)
	})
	if s.deferrable(err) {
		sp.Note = "pending: Entra refused (403); retried in the background"
		return sp, true
	}
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			s.sponsors.forget(inv.Inviter.UserID) // the account may be gone
		}
		sp.Note = "Entra did not take the sponsor: " + redact(err, sp.Email)
		return sp, false
	}
	sp.InEntra = true
	return sp, false
}

// SponsorTTL is how long an inviter's Entra account (found or not found by
// their Slack email) is reused for the sponsor: it is per person, not per
// invitation. A failed sponsor write for a missing account drops it.
const SponsorTTL = 10 * time.Minute

// account is an inviter's mapping to Entra: their Slack email and the
// object ID of the internal account with it ("" if none).
type account struct {
	email, objectID string
	at              time.Time
}

// accounts caches inviters' accounts by Slack user ID.
type accounts struct {
	mu sync.Mutex
	m  map[string]account
}

func (a *accounts) forget(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, user)
}

// sponsorAccount maps a Slack user to their internal Entra account by their
// Slack email (internalAccount, as AccountOf does), cached for SponsorTTL. The error is a note for the record,
// free of the email address.
func (s *Service) sponsorAccount(ctx context.Context, user string) (account, error) {
	now := s.now()
	s.sponsors.mu.Lock()
	acct, ok := s.sponsors.m[user]
	s.sponsors.mu.Unlock()
	if ok && now.Sub(acct.at) < SponsorTTL {
		return acct, nil
	}
	if s.people == nil {
		return account{}, errors.New("no Slack directory to map the inviter")
	}
	email, err := s.people.Email(ctx, user)
	if err != nil || email == "" {
		return account{}, errors.New("the inviter's Slack profile has no email invitebot can read")
	}
	oid, err := s.internalAccount(ctx, email)
	if err != nil {
		return account{email: email}, errors.New("looking up the inviter in Entra failed: " + redact(err, email))
	}
	acct = account{email: email, objectID: oid, at: now}
	s.sponsors.mu.Lock()
	if s.sponsors.m == nil {
		s.sponsors.m = map[string]account{}
	}
	for u, a := range s.sponsors.m {
		if now.Sub(a.at) >= SponsorTTL {
			delete(s.sponsors.m, u)
		}
	}
	s.sponsors.m[user] = acct
	s.sponsors.mu.Unlock()
	return acct, nil
}

func mergeGroups(a, b []string) []string {
	out := slices.Clone(a)
	for _, g := range b {
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// notifyDone tells the inviter, retrying Slack failures; the state moves to
// notified only after Slack accepted the message (at least once delivery).
func (s *Service) notifyDone(ctx context.Context, inv *Invitation) error {
	if !inv.Origin.TellsDone(inv) {
		// Nothing to forward: the bulk results report it.
		return s.advance(ctx, inv, StateNotified, "reported in the bulk results", "", nil)
	}
	if inv.Origin.Batch() {
		if err := s.bulkDMs.wait(ctx); err != nil {
			return err
		}
	}
	ref, err := s.deliver(ctx, Notice{Kind: NoticeDone, Invitation: inv.Clone(), ID: inv.ID + "/done", Recover: recovering(ctx)})
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // shutting down: provisioned is resumed by the next start
	}
	if err != nil {
		return s.failWith(ctx, inv, &Failure{Code: FailNotify, Step: inv.State, Retryable: true})
	}
	return s.advance(ctx, inv, StateNotified, "inviter notified", "", func(cur *Invitation) { cur.DM = ref })
}

// deliver sends a final notice with the transient retry budget.
func (s *Service) deliver(ctx context.Context, n Notice) (MessageRef, error) {
	var (
		ref MessageRef
		err error
	)
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		ref, err = s.note.Notify(cctx, n)
		cancel()
		if err == nil || ctx.Err() != nil || attempt >= s.transient.Attempts || errors.Is(err, ErrUndeliverable) {
			break
		}
		s.log.WarnContext(ctx, "notify failed; retrying", "kind", n.Kind, "invitation", n.Invitation, "err", err)
		if s.pause(ctx, WaitSlackRetry, s.transient.Delay(attempt, waitFor(err))) != nil {
			break
		}
	}
	if err != nil {
		s.log.ErrorContext(ctx, "notify failed", "kind", n.Kind, "invitation", n.Invitation, "err", err)
	}
	return ref, err
}

// fail records err as the invitation's failure and tells the inviter.
func (s *Service) fail(ctx context.Context, inv *Invitation, err error) {
	if errors.Is(err, ErrFenced) {
		// Another replica runs it now (it adopted it, or took the
		// background lease): it carries on from the recorded state.
		s.log.WarnContext(ctx, "invitation stopped here: it runs elsewhere", "invitation", inv, "err", err)
		return
	}
	s.log.WarnContext(ctx, "invitation failed", "invitation", inv, "err", redact(err, inv.Request.Email))
	if errors.Is(err, ErrWrongState) {
		return // someone else moved it on; nothing to record
	}
	if err := s.failWith(ctx, inv, failureFor(inv.State, err)); err != nil {
		s.log.ErrorContext(ctx, "record failure", "invitation", inv, "err", err)
	}
}

// failWith records f and tells the inviter (unless Slack is what failed).
func (s *Service) failWith(ctx context.Context, inv *Invitation, f *Failure) error {
	got, err := s.store.UpdateInvitation(ctx, inv.ID, func(cur *Invitation) error {
		if cur.State.Terminal() {
			return ErrWrongState
		}
		f.Step = cur.State
		cur.Failure = f
		detail := string(f.Code)
		if f.Message != "" {
			detail += ": " + f.Message
		}
		s.setState(cur, StateFailed, ActorBot, "failed", detail)
		if f.Code != FailNotify && cur.Origin.TellsFailure() { // not if Slack failed, or a batch's results report it
			// Recorded with the failure, so a crash before Slack took it
			// does not leave the inviter untold (the next cycle sends it).
			cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeFailed, At: cur.UpdatedAt})
		}
		return nil
	})
	if err != nil {
		return err
	}
	*inv = *got
	s.flush(ctx, inv.ID)
	return nil
}

// redact renders err for the log with the guest's address replaced: Graph's
// messages may quote it, and the log carries only the guest's domain.
func redact(err error, email string) string {
	msg := err.Error()
	if email == "" {
		return msg
	}
	re := regexp.MustCompile("(?i)" + regexp.QuoteMeta(email))
	return re.ReplaceAllLiteralString(msg, "<guest@"+Domain(email)+">")
}

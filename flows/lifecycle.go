package flows

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

var (
	// ErrInProgress is returned when another lifecycle action on the same
	// invitation has not finished (e.g. a second click on Resend).
	ErrInProgress = errors.New("another action on this invitation is in progress")
	// ErrNotApplicable is returned when an action does not apply to the
	// invitation (e.g. Resend after the guest accepted).
	ErrNotApplicable = errors.New("action does not apply to this invitation")
)

// may reports whether who may act on inv: its inviter, or an admin; admin
// actions need an admin.
func (s *Service) may(inv *Invitation, who Inviter, kind ActionKind) bool {
	admin := s.Policy().IsAdmin(who.UserID)
	if kind.AdminOnly() {
		return admin
	}
	return admin || inv.Inviter == who
}

// Applicable reports why kind cannot be taken on inv now, or nil. It does
// not check who asks: see Service.Act.
func Applicable(inv *Invitation, kind ActionKind) error {
	live := inv.State == StateNotified || inv.State == StateAccepted
	if kind == ActionDelete && inv.State == StateRevoked && !slices.ContainsFunc(inv.History, func(e Event) bool { return e.Action == string(ActionDelete) }) {
		live = true // removed from its groups; the account itself may still go
	}
	if inv.ObjectID == "" || !live {
		return fmt.Errorf("%s: invitation is %s: %w", kind, inv.State, ErrNotApplicable)
	}
	switch kind {
	case ActionResend:
		if !inv.Pending() {
			return fmt.Errorf("resend: not a pending invitation: %w", ErrNotApplicable)
		}
	case ActionDelete:
		if inv.Picked || inv.Request.ConvertFrom != "" {
			// invitebot did not create this account (an existing one was
			// picked, or an employee's was converted): not its to delete.
			return fmt.Errorf("delete: invitebot did not create this account: %w", ErrNotApplicable)
		}
	case ActionReset:
		if inv.Tracking.External == TrackNone {
			return fmt.Errorf("reset: not an invited external user: %w", ErrNotApplicable)
		}
	case ActionRevokeGroups:
		if len(inv.GroupsAdded) == 0 {
			return fmt.Errorf("revoke: invitebot added no groups: %w", ErrNotApplicable)
		}
	}
	return nil
}

// Act starts a lifecycle action on invitation id for who. It checks
// permission (ErrNotAuthorized), applicability (ErrNotApplicable) and that
// no other action runs (ErrInProgress) in one store transaction, so of two
// concurrent clicks exactly one starts; the action itself runs in the
// background and its outcome is DMed to the inviter (and to who, if an
// admin acted on someone else's invitation).
func (s *Service) Act(ctx context.Context, id string, who Inviter, kind ActionKind) (*Invitation, error) {
	inv, err := s.store.UpdateInvitation(ctx, id, func(inv *Invitation) error {
		if !s.may(inv, who, kind) {
			return ErrNotAuthorized
		}
		if inv.Action != nil {
			return ErrInProgress
		}
		if err := Applicable(inv, kind); err != nil {
			return err
		}
		inv.Action = &Action{Kind: kind, By: who.UserID, At: s.now()}
		inv.History = append(inv.History, s.event(inv, who.UserID, string(kind)+" requested", ""))
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotAuthorized) {
			s.log.WarnContext(ctx, "refused lifecycle action", "action", kind, "user", who.UserID, "id", id)
			s.audit(ctx, id, who.UserID, "refused", string(kind)+": not allowed")
		}
		return nil, err
	}
	s.log.InfoContext(ctx, "lifecycle action", "action", kind, "by", who.UserID, "invitation", inv)
	s.startAction(ctx, id)
	return inv, nil
}

// startAction runs invitation id's pending action in the background unless
// it already runs.
func (s *Service) startAction(ctx context.Context, id string) {
	s.goOnce(ctx, "action:", id, func(ctx context.Context) { s.runAction(ctx, id) })
}

func (s *Service) runAction(ctx context.Context, id string) {
	ctx = WithInvitationID(ctx, id)
	inv, err := s.store.Invitation(ctx, id)
	if err != nil || inv.Action == nil {
		return
	}
	a := *inv.Action
	var (
		res    Invited
		detail string
	)
	switch a.Kind {
	case ActionResend, ActionReset:
		// A resend is sent as the person who asked for it (when the mode
		// says so); resetting redemption stays with the app.
		var sd sender
		if a.Kind == ActionResend {
			sd, err = s.sender(ctx, Inviter{TeamID: inv.Inviter.TeamID, UserID: a.By})
		}
		if err == nil {
			res, err = s.reinvite(ctx, inv, a.Kind == ActionReset, &sd)
		}
		detail = "new invitation link"
		if inv.Request.Delivery == DeliveryMicrosoftEmail {
			detail = "Microsoft emailed the invitation again"
		}
		detail += " " + sd.String()
	case ActionRevokeGroups:
		var n int
		n, err = s.removeGroups(ctx, inv)
		detail = fmt.Sprintf("removed from %d group(s)", n)
	case ActionExpire:
		// Blocking sign-in is for accounts invitebot created; a picked
		// existing account or a converted employee only leaves the groups.
		if s.Policy().ExpiryAction == ExpireDisable && !inv.Picked && inv.Request.ConvertFrom == "" {
			err = s.retryDirectory(ctx, false, nil, func(ctx context.Context) error { return s.dir.DisableUser(ctx, inv.ObjectID) })
			detail = "access expired: sign-in blocked"
		} else {
			var n int
			n, err = s.removeGroups(ctx, inv)
			detail = fmt.Sprintf("access expired: removed from %d group(s)", n)
		}
	case ActionDelete:
		err = s.retryDirectory(ctx, false, nil, func(ctx context.Context) error { return s.dir.DeleteUser(ctx, inv.ObjectID) })
		if errors.Is(err, ErrNotFound) {
			err, detail = nil, "the user was already deleted"
		} else {
			detail = "user deleted"
		}
	}
	if ctx.Err() != nil {
		return // resumed by the next Start
	}
	now := s.now()
	got, uerr := s.store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		if cur.Action == nil || *cur.Action != a {
			return ErrWrongState
		}
		cur.Action = nil
		out := Outgoing{Kind: NoticeActionDone, At: now, Action: a.Kind, By: a.By}
		if err != nil {
			f := failureFor(cur.State, err)
			out.Kind, out.Failure = NoticeActionFailed, f
			if a.Kind == ActionExpire && cur.Expiry != nil {
				cur.Expiry.Failures++ // checkExpiry gives up after a few
			}
			cur.History = append(cur.History, s.event(cur, a.By, string(a.Kind)+" failed", string(f.Code)+" "+f.Message))
			cur.Outbox = append(cur.Outbox, out)
			return nil
		}
		switch a.Kind {
		case ActionResend, ActionReset:
			cur.RedeemURL, cur.InvitedAt = res.RedeemURL, now
			cur.Tracking.Resends++
			cur.Tracking.MissingSince = time.Time{}
			if a.Kind == ActionReset {
				cur.State, cur.Tracking.External, cur.Tracking.AcceptedAt = StateNotified, ExternalPending, time.Time{}
				cur.Tracking.ResetAt = now
			}
			cur.History = append(cur.History, s.event(cur, a.By, string(a.Kind), detail))
			cur.UpdatedAt = now
		case ActionRevokeGroups, ActionDelete, ActionExpire:
			s.setState(cur, StateRevoked, a.By, string(a.Kind), detail)
		}
		cur.Outbox = append(cur.Outbox, out)
		return nil
	})
	if uerr != nil {
		s.log.ErrorContext(ctx, "record lifecycle action", "action", a.Kind, "id", id, "err", uerr)
		return
	}
	if err != nil {
		s.log.WarnContext(ctx, "lifecycle action failed", "action", a.Kind, "invitation", got, "err", redact(err, got.Request.Email))
	} else {
		s.log.InfoContext(ctx, "lifecycle action done", "action", a.Kind, "invitation", got)
		s.syncGuest(ctx, got)
	}
	s.flush(ctx, id)
}

// reinvite re-POSTs the invitation for the same address (the same user
// comes back, with a fresh redeem link), or with reset resetRedemption for
// the guest's object ID. A 429 is retried after Retry-After; other
// temporary failures are retried only with the Slack delivery, where a
// repeated POST sends no second email.
func (s *Service) reinvite(ctx context.Context, inv *Invitation, reset bool, sd *sender) (Invited, error) {
	r := inv.Request
	in := Invite{
		Email: r.Email, DisplayName: r.DisplayName, RedirectURL: r.RedirectURL,
		SendMessage: r.Delivery == DeliveryMicrosoftEmail, Message: r.Message, CC: r.CC, UserType: r.UserType,
	}
	if reset || r.ConvertFrom != "" {
		in.ExistingUserID = inv.ObjectID
		in.ResetRedemption = reset
	}
	for attempt := 1; ; attempt++ {
		if err := s.invites.wait(ctx); err != nil {
			return Invited{}, err
		}
		cctx, cancel := context.WithTimeout(ctx, s.callTimeout)
		res, err := s.sendInvite(cctx, sd, in)
		cancel()
		if err == nil {
			if res.UserID != "" && res.UserID != inv.ObjectID {
				return res, fmt.Errorf("re-invite returned user %s, expected %s", res.UserID, inv.ObjectID)
			}
			return res, nil
		}
		var de *DirectoryError
		retry := errors.As(err, &de) && (de.Throttled() || (de.Temporary() && !in.SendMessage))
		if ctx.Err() != nil || !retry || attempt >= s.transient.Attempts {
			return Invited{}, err
		}
		if err := s.pause(ctx, retryReason(de), s.transient.Delay(attempt, de.RetryAfter)); err != nil {
			return Invited{}, err
		}
	}
}

// removeGroups removes the guest from every group invitebot added.
func (s *Service) removeGroups(ctx context.Context, inv *Invitation) (int, error) {
	for i, gid := range inv.GroupsAdded {
		err := s.retryDirectory(ctx, false, nil, func(ctx context.Context) error {
			return s.dir.RemoveGroupMember(ctx, gid, inv.ObjectID)
		})
		if err != nil {
			return i, fmt.Errorf("remove from group %s: %w", gid, err)
		}
	}
	return len(inv.GroupsAdded), nil
}

// syncGuest mirrors the invitation's state into the guest record.
func (s *Service) syncGuest(ctx context.Context, inv *Invitation) {
	if inv.ObjectID == "" {
		return
	}
	g, err := s.store.Guest(ctx, inv.ObjectID)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.log.WarnContext(ctx, "read guest", "invitation", inv, "err", err)
		}
		return
	}
	g.State, g.UpdatedAt = inv.State, s.now()
	if inv.State == StateRevoked && inv.Action == nil {
		g.Groups = slices.DeleteFunc(g.Groups, func(id string) bool { return slices.Contains(inv.GroupsAdded, id) })
	}
	if err := s.store.SaveGuest(ctx, *g); err != nil {
		s.log.WarnContext(ctx, "save guest", "invitation", inv, "err", err)
	}
}

// flushLater delivers invitation id's outbox in the background.
func (s *Service) flushLater(ctx context.Context, id string) {
	s.goOnce(ctx, "outbox:", id, func(ctx context.Context) { s.flush(ctx, id) })
}

// flush delivers inv's outbox, oldest first, removing each notice once
// Slack accepted it. What cannot be delivered stays for the next flush (the
// tracker's next cycle, or the next Start).
func (s *Service) flush(ctx context.Context, id string) {
	ctx = WithInvitationID(ctx, id)
	defer s.lock("outbox:" + id)()
	inv, err := s.store.Invitation(ctx, id) // the outbox as it is now
	if err != nil {
		s.log.ErrorContext(ctx, "load invitation", "id", id, "err", err)
		return
	}
	for _, out := range inv.Outbox {
		n := Notice{Kind: out.Kind, Invitation: inv.Clone(), Action: out.Action, By: out.By, Failure: out.Failure, To: out.To,
			ID: out.noticeID(inv.ID), Recover: recovering(ctx)}
		ref, derr := s.deliver(ctx, n)
		if derr != nil && !errors.Is(derr, ErrUndeliverable) {
			return // kept for the next flush
		}
		got, err := s.store.UpdateInvitation(ctx, inv.ID, func(cur *Invitation) error {
			i := slices.IndexFunc(cur.Outbox, func(o Outgoing) bool { return o.Kind == out.Kind && o.At.Equal(out.At) && o.To == out.To })
			if i < 0 {
				return ErrWrongState
			}
			cur.Outbox = slices.Delete(cur.Outbox, i, i+1)
			if out.Kind == NoticeApprovalRequested && derr == nil && cur.Approval != nil && ref.TS != "" {
				cur.Approval.Messages = append(cur.Approval.Messages, ApprovalMessage{To: out.To, Ref: ref})
			}
			if derr != nil {
				cur.History = append(cur.History, s.event(cur, ActorBot, "notice dropped", string(out.Kind)+": "+derr.Error()))
			}
			return nil
		})
		if err != nil {
			s.log.ErrorContext(ctx, "record notice delivered", "invitation", inv, "kind", out.Kind, "err", err)
			return
		}
		*inv = *got
	}
}

// Convert converts an internal account (object ID or UPN) to a B2B user
// whose external address is email, keeping its object ID, groups and app
// assignments. Only admins may; the account is checked in the background
// (its mail must equal email and it must not be synced from on-premises)
// and the outcome DMed like an invitation's.
func (s *Service) Convert(ctx context.Context, who Inviter, account, email string) (*Invitation, error) {
	p := s.Policy()
	if !p.IsAdmin(who.UserID) {
		return nil, ErrNotAuthorized
	}
	account = strings.TrimSpace(account)
	if account == "" {
		return nil, FieldErrors{FieldConvertFrom: "Name the internal account (its user principal name or object ID)."}
	}
	r := Request{Email: email, Delivery: DeliverySlackLink, ConvertFrom: account}
	r = r.Normalize(p)
	if errs := Validate(r, true, p, s.Domains()); errs != nil {
		return nil, errs
	}
	r.UserType = "" // conversion keeps the account's user type
	return s.create(ctx, Origin{Kind: OriginConvert}, who, r, "convert requested", "from "+account, nil)
}

// checkConvert replaces the directory lookup for a conversion: the account
// must exist, be an internal account whose mail is the external address,
// and not be synced from on-premises.
func (s *Service) checkConvert(ctx context.Context, inv *Invitation) error {
	var u DirectoryUser
	err := s.retryDirectory(ctx, false, s.waiting(ctx, inv), func(ctx context.Context) error {
		var err error
		u, err = s.dir.User(ctx, inv.Request.ConvertFrom)
		return err
	})
	refuse := func(msg string) error {
		return s.failWith(ctx, inv, &Failure{Code: FailConvertRefused, Message: msg})
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return refuse("there is no account " + inv.Request.ConvertFrom + " in the directory")
	case err != nil:
		return err
	case u.OnPremisesUserPrincipalName != "":
		return refuse("the account is synced from on-premises Active Directory (onPremisesUserPrincipalName is set); convert it there")
	case u.ExternalUserState != "":
		return refuse("the account is already an external (B2B) user")
	case !strings.EqualFold(u.Mail, inv.Request.Email):
		return refuse(fmt.Sprintf("the account's mail is %q, not %s: set its mail to the external address first", u.Mail, inv.Request.Email))
	}
	return s.advance(ctx, inv, StateInviting, "account can be converted", u.ID, func(cur *Invitation) {
		cur.ObjectID = u.ID
		cur.Request.DisplayName = cmp.Or(cur.Request.DisplayName, u.DisplayName)
	})
}

// InvitationsFor returns the invitations who may see: their own (by Slack
// user ID, which is unique across an Enterprise Grid), or, for an admin,
// everyone's (all is true then).
func (s *Service) InvitationsFor(ctx context.Context, who Inviter) (invs []*Invitation, all bool, err error) {
	all = s.Policy().IsAdmin(who.UserID)
	f := InvitationFilter{Inviter: who.UserID}
	if all {
		f = InvitationFilter{}
	}
	invs, err = s.store.Invitations(ctx, f)
	return invs, all, err
}

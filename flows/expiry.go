package flows

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// DefaultExpiryWarning is how long before a guest's access ends the
// sponsor is asked, by default.
const DefaultExpiryWarning = 7 * 24 * time.Hour

// live reports whether inv's guest has access invitebot manages.
func live(inv *Invitation) bool {
	return inv.ObjectID != "" && (inv.State == StateNotified || inv.State == StateAccepted)
}

// checkExpiry, run by each tracking cycle, asks the sponsor before a
// guest's access ends (once) and ends it when the date has passed. It
// returns what it did: NoticeExpiring, ActionExpire's kind, or "".
func (s *Service) checkExpiry(ctx context.Context, id string) (string, error) {
	var did string
	_, err := s.store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		did = ""
		x := cur.Expiry
		if x == nil || !live(cur) || cur.Action != nil || x.Failures >= MaxExpiryFailures {
			return errUnchanged
		}
		now := s.now()
		warn := s.Policy().ExpiryWarning
		if warn == 0 {
			warn = DefaultExpiryWarning
		}
		switch {
		case !now.Before(x.At):
			did = string(ActionExpire)
			cur.Action = &Action{Kind: ActionExpire, By: ActorBot, At: now}
			cur.History = append(cur.History, s.event(cur, ActorBot, "expire requested", x.At.UTC().Format(time.RFC3339)))
		case x.WarnedAt.IsZero() && !x.LetExpire && !now.Before(x.At.Add(-warn)):
			did = string(NoticeExpiring)
			x.WarnedAt = now
			cur.History = append(cur.History, s.event(cur, ActorBot, "expiry reminder", x.At.UTC().Format(time.RFC3339)))
			cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeExpiring, At: now})
		default:
			return errUnchanged
		}
		return nil
	})
	switch {
	case errors.Is(err, errUnchanged):
		return "", nil
	case err != nil:
		return "", err
	case did == string(ActionExpire):
		s.startAction(ctx, id)
	default:
		s.flushLater(ctx, id)
	}
	return did, nil
}

// Extend gives the guest another access period from now (or from the end
// date, if later). The sponsor (the inviter) or an admin may.
//
// Extend answers a reminder: once it is answered, a second click (or one
// before any reminder) is ErrNotApplicable, so clicks cannot stack periods.
func (s *Service) Extend(ctx context.Context, id string, who Inviter) (*Invitation, error) {
	got, err := s.store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		if !s.may(cur, who, ActionRevokeGroups) { // the sponsor's or an admin's call
			return ErrNotAuthorized
		}
		if cur.Expiry == nil || !live(cur) || cur.Action != nil || cur.Expiry.WarnedAt.IsZero() {
			return fmt.Errorf("extend: %w", ErrNotApplicable)
		}
		x := cur.Expiry
		from := x.At // extend from the end date, or from now if it passed
		if now := s.now(); from.Before(now) {
			from = now
		}
		x.At, x.WarnedAt, x.LetExpire, x.Failures = from.Add(x.Period), time.Time{}, false, 0
		cur.UpdatedAt = s.now()
		cur.History = append(cur.History, s.event(cur, who.UserID, "extended", "to "+x.At.UTC().Format(time.RFC3339)))
		return nil
	})
	if errors.Is(err, ErrNotAuthorized) {
		s.audit(ctx, id, who.UserID, "refused", "extend: not the sponsor or an admin")
	}
	return got, err
}

// LetExpire records that the sponsor wants the access to end as planned
// (no further reminder).
func (s *Service) LetExpire(ctx context.Context, id string, who Inviter) (*Invitation, error) {
	got, err := s.store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		if !s.may(cur, who, ActionRevokeGroups) {
			return ErrNotAuthorized
		}
		if cur.Expiry == nil || !live(cur) {
			return fmt.Errorf("let expire: %w", ErrNotApplicable)
		}
		cur.Expiry.LetExpire = true
		cur.UpdatedAt = s.now()
		cur.History = append(cur.History, s.event(cur, who.UserID, "let expire", cur.Expiry.At.UTC().Format(time.RFC3339)))
		return nil
	})
	if errors.Is(err, ErrNotAuthorized) {
		s.audit(ctx, id, who.UserID, "refused", "let expire: not the sponsor or an admin")
	}
	return got, err
}

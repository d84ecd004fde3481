package flows

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Deferred is the writes to a guest (its attributes, its sponsor) that
// Entra refused with 403 and that invitebot retries in the background.
//
// Microsoft's least-privilege pattern for line-of-business apps gives the
// app a role scoped to a dynamic administrative unit of guests instead of
// the tenant-wide User.ReadWrite.All. A new guest joins that unit only
// after Entra has processed its dynamic membership, which Microsoft does
// not bound, so until then the app may not write to it. The writes are
// retried with growing intervals over Config.ScopedWriteWindow, driven by
// the tracking cycle (so they survive restarts); the invitation itself
// goes on meanwhile.
type Deferred struct {
	Attributes bool   `json:"attributes,omitempty"` // Request.Attributes are still to write
	SponsorID  string `json:"sponsorId,omitempty"`  // the inviter's account, still to add as sponsor
	// Since is when Entra first refused; the retries end Window later.
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Attempts int       `json:"attempts"` // retries so far
	NextAt   time.Time `json:"nextAt"`
	// LastError is the last refusal (Graph's status and message).
	LastError string `json:"lastError,omitempty"`
	// DoneAt is when the last pending write went through.
	DoneAt time.Time `json:"doneAt,omitzero"`
	// GaveUp says why the remaining writes were abandoned.
	GaveUp string `json:"gaveUp,omitempty"`
}

// Active reports whether writes are still pending and being retried.
func (d *Deferred) Active() bool {
	return d != nil && d.GaveUp == "" && (d.Attributes || d.SponsorID != "")
}

// What returns the pending writes in words: "attributes", "sponsor", or
// "attributes and sponsor".
func (d *Deferred) What() string {
	var w []string
	if d.Attributes {
		w = append(w, "attributes")
	}
	if d.SponsorID != "" {
		w = append(w, "sponsor")
	}
	return strings.Join(w, " and ")
}

// DefaultScopedWriteWindow is how long refused writes to a new guest are
// retried: Microsoft says dynamic membership can take up to 24 hours.
const DefaultScopedWriteWindow = 24 * time.Hour

// DefaultScopedWriteBackoff spaces the retries: 1 minute, doubling, at
// most an hour apart.
var DefaultScopedWriteBackoff = Backoff{Base: time.Minute, Max: time.Hour}

// Op values of the writes that may be deferred; the permission or role
// they need is WriteNeeds.
const (
	OpUpdateUser = "update user"
	OpAddSponsor = "add sponsor"
)

// WriteNeeds names what Entra requires for a deferred write of op (the
// tenant-wide permission, or the scoped role's actions), for the record
// and the inviter.
func WriteNeeds(op string) string {
	action := "microsoft.directory/users/basic/update and microsoft.directory/users/jobInfo/update"
	if op == OpAddSponsor {
		action = "microsoft.directory/users/sponsors/update"
	}
	return "the application permission User.ReadWrite.All, or a directory role with " + action +
		` assigned to invitebot at the scope of an administrative unit the guest is in (for example a dynamic unit with the rule user.userType -eq "Guest")`
}

// deferWrite records (in cur, inside a store update) that a write was
// refused with 403 and will be retried; set marks which.
func (s *Service) deferWrite(cur *Invitation, set func(*Deferred)) {
	now := s.now()
	if !cur.Deferred.Active() {
		cur.Deferred = &Deferred{Since: now, Until: now.Add(s.scopedWindow), NextAt: now.Add(s.scopedBackoff.Delay(1, 0))}
	}
	set(cur.Deferred)
}

// deferrable reports whether err is a refusal to retry in the background.
func (s *Service) deferrable(err error) bool {
	return s.scopedWindow > 0 && errors.Is(err, ErrForbidden)
}

// deferredDue reports whether inv has pending writes to retry now.
func (s *Service) deferredDue(inv *Invitation) bool {
	return inv.Deferred.Active() && !s.now().Before(inv.Deferred.NextAt)
}

// startDeferred retries invitation id's pending writes in the background.
func (s *Service) startDeferred(ctx context.Context, id string) {
	s.goOnce(ctx, "deferred:", id, func(ctx context.Context) { s.runDeferred(ctx, id) })
}

// runDeferred tries the pending writes once and records the outcome: each
// write that went through, the next attempt, or, past the window (or on a
// refusal other than 403), that they were given up, with a notice to the
// inviter naming what Entra requires.
func (s *Service) runDeferred(ctx context.Context, id string) {
	ctx = WithInvitationID(ctx, id)
	inv, err := s.store.Invitation(ctx, id)
	if err != nil || !s.deferredDue(inv) {
		return
	}
	d := *inv.Deferred
	var attrErr, spErr error
	if inv.State == StateRemoved {
		gone := errors.New("the guest was deleted in Entra")
		attrErr, spErr = gone, gone
	} else {
		if d.Attributes {
			attrErr = s.retryDirectory(ctx, false, nil, func(ctx context.Context) error {
				return s.dir.UpdateUser(ctx, inv.ObjectID, inv.Request.Attributes)
			})
		}
		if d.SponsorID != "" {
			spErr = s.retryDirectory(ctx, false, nil, func(ctx context.Context) error {
				return s.dir.AddSponsor(ctx, inv.ObjectID, d.SponsorID)
			})
		}
	}
	if ctx.Err() != nil {
		return
	}
	gaveUp := false
	got, err := s.store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		cd := cur.Deferred
		if !cd.Active() || cd.Attempts != d.Attempts {
			return errUnchanged // another run recorded this attempt
		}
		now := s.now()
		cd.Attempts++
		after := fmt.Sprintf("after %d retries, %s after the first refusal", cd.Attempts, age(now.Sub(cd.Since)))
		if d.Attributes && attrErr == nil {
			cd.Attributes = false
			cur.History = append(cur.History, s.event(cur, ActorBot, "attributes written", after))
		}
		if d.SponsorID != "" && spErr == nil {
			cd.SponsorID = ""
			if cur.Sponsor != nil {
				cur.Sponsor.InEntra, cur.Sponsor.Note = true, ""
			}
			cur.History = append(cur.History, s.event(cur, ActorBot, "sponsor set in Entra", after))
		}
		cur.UpdatedAt = now
		if !cd.Active() {
			cd.DoneAt, cd.LastError = now, ""
			if cur.DM.TS != "" {
				cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeWritesDone, At: now})
			}
			return nil
		}
		op, ferr := OpUpdateUser, attrErr
		if !cd.Attributes {
			op, ferr = OpAddSponsor, spErr
		}
		cd.LastError = redact(ferr, cur.Request.Email)
		var de *DirectoryError
		refused := errors.As(ferr, &de) && (de.Status == 403 || de.Temporary())
		if refused && now.Before(cd.Until) {
			cd.NextAt = now.Add(s.scopedBackoff.Delay(cd.Attempts+1, 0))
			if cd.NextAt.After(cd.Until) {
				cd.NextAt = cd.Until // one last try at the window's end
			}
			return nil
		}
		f := &Failure{Code: FailRejected, Op: op, Step: cur.State}
		switch {
		case errors.As(ferr, &de) && de.Status == 403:
			f.Code, f.Message = FailForbidden, de.Message
			cd.GaveUp = fmt.Sprintf("Entra still refused (403) %s: invitebot needs %s", after, WriteNeeds(op))
		case errors.As(ferr, &de):
			f.Message = de.Message
			cd.GaveUp = "Entra refused: " + cd.LastError
		default:
			f.Message = ferr.Error()
			cd.GaveUp = ferr.Error()
		}
		if cur.Sponsor != nil && cd.SponsorID != "" {
			cur.Sponsor.Note = "Entra did not take the sponsor: " + cd.GaveUp
		}
		gaveUp = true
		cur.History = append(cur.History, s.event(cur, ActorBot, "pending writes abandoned", cd.What()+": "+cd.GaveUp))
		if cur.Origin.TellsFailure() { // a batch's inviter is not sent one DM per row
			cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeWritesAbandoned, At: now, Failure: f})
		}
		return nil
	})
	switch {
	case errors.Is(err, errUnchanged):
	case err != nil:
		s.log.ErrorContext(ctx, "record pending writes", "err", err)
	case gaveUp:
		s.log.WarnContext(ctx, "pending writes abandoned", "invitation", got, "reason", got.Deferred.GaveUp)
		s.flushLater(ctx, id)
	case !got.Deferred.Active():
		s.log.InfoContext(ctx, "pending writes done", "invitation", got, "attempts", got.Deferred.Attempts)
		s.syncSponsor(ctx, got)
		s.flushLater(ctx, id)
	default:
		s.log.InfoContext(ctx, "writes still refused", "invitation", got, "next", got.Deferred.NextAt, "err", got.Deferred.LastError)
	}
}

// syncSponsor copies the invitation's sponsor to the guest's record.
func (s *Service) syncSponsor(ctx context.Context, inv *Invitation) {
	if inv.Sponsor == nil || inv.ObjectID == "" {
		return
	}
	g, err := s.store.Guest(ctx, inv.ObjectID)
	if err != nil {
		return
	}
	sp := *inv.Sponsor
	g.Sponsor, g.UpdatedAt = &sp, s.now()
	if err := s.store.SaveGuest(ctx, *g); err != nil {
		s.log.WarnContext(ctx, "save guest", "invitation", inv, "err", err)
	}
}

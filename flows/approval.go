package flows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrExpired is returned when an approval is decided after it expired.
var ErrExpired = errors.New("the approval request has expired")

// DefaultApprovalTTL is how long an approval request waits by default.
const DefaultApprovalTTL = 72 * time.Hour

// HasApprovals reports whether any request could need approval, so the
// dialog asks for a justification.
func (p Policy) HasApprovals() bool {
	if p.Domains.Default == DomainApprove || slices.ContainsFunc(p.Domains.Rules, func(r DomainRule) bool { return r.Action == DomainApprove }) {
		return true
	}
	return slices.ContainsFunc(p.Groups, func(g Group) bool { return len(g.Approvers) > 0 })
}

// requestApproval turns a new invitation into one that waits for a
// decision, with its requests in the outbox (one to the approvals channel,
// or one DM per approver).
func (s *Service) requestApproval(inv *Invitation, d Decision) {
	p := s.Policy()
	ttl := p.ApprovalTTL
	if ttl == 0 {
		ttl = DefaultApprovalTTL
	}
	now := inv.CreatedAt
	inv.State = StateAwaitingApproval
	inv.Approval = &Approval{Approvers: d.Approvers, RequestedAt: now, ExpiresAt: now.Add(ttl)}
	inv.History = append(inv.History, s.event(inv, ActorBot, "sent for approval", fmt.Sprintf("%d approver(s)", len(d.Approvers))))
	to := d.Approvers
	if p.ApprovalChannel != "" {
		to = []string{p.ApprovalChannel}
	}
	for _, t := range to {
		inv.Outbox = append(inv.Outbox, Outgoing{Kind: NoticeApprovalRequested, At: now, To: t})
	}
}

// Decide records an approver's decision on invitation id: approve starts
// the invitation; deny ends it with reason. who must be one of the request's
// approvers under the policy in force now (so an approver removed since
// cannot decide) and not its requester. A refused attempt is recorded in
// the audit log. A second decision gets ErrWrongState.
func (s *Service) Decide(ctx context.Context, id string, who Inviter, approve bool, reason string) (*Invitation, error) {
	var refused string
	got, err := s.store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		if cur.State != StateAwaitingApproval || cur.Approval == nil {
			return ErrWrongState
		}
		d := s.Policy().Decide(cur.Request, cur.Inviter.UserID)
		switch {
		case who.UserID == cur.Inviter.UserID:
			refused = "the requester cannot decide their own request"
		case !slices.Contains(d.Approvers, who.UserID):
			refused = "not an approver of this request"
		}
		if refused != "" {
			return ErrNotAuthorized
		}
		now := s.now()
		if now.After(cur.Approval.ExpiresAt) {
			return ErrExpired
		}
		a := cur.Approval
		a.DecidedBy, a.DecidedAt, a.Reason = who.UserID, now, reason
		if approve {
			a.Decision = DecisionApproved
			s.setState(cur, StateRequested, who.UserID, "approved", reason)
		} else {
			a.Decision = DecisionDenied
			cur.Failure = &Failure{Code: FailDenied, Message: reason, Step: cur.State}
			s.setState(cur, StateFailed, who.UserID, "denied", reason)
		}
		cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeApprovalDecided, At: now, By: who.UserID})
		return nil
	})
	if errors.Is(err, ErrNotAuthorized) {
		s.log.Warn("refused approval decision", "id", id, "user", who.UserID, "why", refused)
		_, aerr := s.store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
			cur.History = append(cur.History, s.event(cur, who.UserID, "decision refused", refused))
			return nil
		})
		if aerr != nil {
			s.log.Error("audit refused decision", "id", id, "err", aerr)
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("approval decided", "invitation", got, "decision", got.Approval.Decision, "by", who.UserID)
	s.flushLater(id)
	if approve {
		s.start(id)
	}
	return got, nil
}

// expireApproval ends an approval nobody decided in time.
func (s *Service) expireApproval(ctx context.Context, id string) error {
	_, err := s.store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		now := s.now()
		if cur.State != StateAwaitingApproval || cur.Approval == nil || !now.After(cur.Approval.ExpiresAt) {
			return errUnchanged
		}
		cur.Approval.Decision, cur.Approval.DecidedAt = DecisionExpired, now
		cur.Failure = &Failure{Code: FailApprovalExpired, Step: cur.State}
		s.setState(cur, StateFailed, ActorBot, "approval expired", "")
		cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeApprovalDecided, At: now})
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	if err == nil {
		s.flushLater(id)
	}
	return err
}

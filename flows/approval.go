package flows

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// ErrPolicyDenied is returned by Decide when the policy in force no longer
// allows the request; it has been ended with the policy's reason.
var ErrPolicyDenied = errors.New("the policy no longer allows this invitation")

// Decide records an approver's decision on invitation id. The request's
// approval stages are those of the policy in force now (so an approver
// removed since cannot decide, and a request the policy now refuses ends
// with ErrPolicyDenied): who must be an approver of a stage still waiting
// and not the requester. Approving approves every waiting stage who may
// approve; the invitation starts when every stage is approved. Denying ends
// it with reason. A refused attempt is recorded in the audit log; a
// decision on a decided request gets ErrWrongState.
func (s *Service) Decide(ctx context.Context, id string, who Inviter, approve bool, reason string) (*Invitation, error) {
	var refused string
	var policyDenied, started bool
	got, err := s.store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		refused, policyDenied, started = "", false, false
		if cur.State != StateAwaitingApproval || cur.Approval == nil {
			return ErrWrongState
		}
		now := s.now()
		if now.After(cur.Approval.ExpiresAt) {
			return ErrExpired
		}
		a := cur.Approval
		d := s.Policy().Decide(cur.Request, cur.Inviter.UserID)
		if d.Denied != "" {
			policyDenied = true
			a.Decision, a.DecidedAt, a.Reason = DecisionDenied, now, d.Denied
			cur.Failure = &Failure{Code: FailDenied, Message: "the policy no longer allows it: " + d.Denied, Step: cur.State}
			s.setState(cur, StateFailed, ActorBot, "denied by policy", d.Denied)
			cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeApprovalDecided, At: now})
			return nil
		}
		var mine []string // the waiting stages who may decide
		for _, st := range d.Stages {
			if a.Approved[st.Name] == "" && slices.Contains(st.Approvers, who.UserID) {
				mine = append(mine, st.Name)
			}
		}
		switch {
		case who.UserID == cur.Inviter.UserID:
			refused = "the requester cannot decide their own request"
		case !d.NeedsApproval() && !slices.Contains(a.Approvers, who.UserID):
			refused = "not an approver of this request"
		case len(mine) == 0 && d.NeedsApproval():
			refused = "not an approver of a stage of this request still waiting"
		}
		if refused != "" {
			return ErrNotAuthorized
		}
		if !d.NeedsApproval() { // the policy no longer asks for approval: it goes ahead
			started = true
			a.Decision, a.DecidedBy, a.DecidedAt = DecisionApproved, who.UserID, now
			s.setState(cur, StateRequested, ActorBot, "approved by policy", "the policy in force needs no approval")
			cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeApprovalDecided, At: now, By: who.UserID})
			return nil
		}
		a.DecidedBy, a.DecidedAt, a.Reason = who.UserID, now, reason
		if !approve {
			a.Decision = DecisionDenied
			cur.Failure = &Failure{Code: FailDenied, Message: reason, Step: cur.State}
			s.setState(cur, StateFailed, who.UserID, "denied", reason)
			cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeApprovalDecided, At: now, By: who.UserID})
			return nil
		}
		if a.Approved == nil {
			a.Approved = map[string]string{}
		}
		for _, name := range mine {
			a.Approved[name] = who.UserID
		}
		complete := !slices.ContainsFunc(d.Stages, func(st Stage) bool { return a.Approved[st.Name] == "" })
		if !complete {
			cur.History = append(cur.History, s.event(cur, who.UserID, "approved in part", strings.Join(mine, ", ")))
			cur.UpdatedAt = now
			cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeApprovalDecided, At: now, By: who.UserID})
			return nil
		}
		started = true
		a.Decision = DecisionApproved
		s.setState(cur, StateRequested, who.UserID, "approved", reason)
		cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeApprovalDecided, At: now, By: who.UserID})
		return nil
	})
	if errors.Is(err, ErrNotAuthorized) {
		s.log.WarnContext(ctx, "refused approval decision", "id", id, "user", who.UserID, "why", refused)
		s.audit(ctx, id, who.UserID, "decision refused", refused)
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "approval decided", "invitation", got, "decision", got.Approval.Decision, "by", who.UserID)
	s.flushLater(ctx, id)
	if started {
		s.start(ctx, id)
	}
	if policyDenied {
		return got, ErrPolicyDenied
	}
	return got, nil
}

// audit appends a refused or otherwise unrecorded attempt to invitation
// id's history and the audit log.
func (s *Service) audit(ctx context.Context, id, actor, action, detail string) {
	_, err := s.store.UpdateInvitation(ctx, id, func(cur *Invitation) error {
		cur.History = append(cur.History, s.event(cur, actor, action, detail))
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.log.ErrorContext(ctx, "audit", "id", id, "action", action, "err", err)
	}
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
		s.flushLater(ctx, id)
	}
	return err
}

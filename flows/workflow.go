package flows

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Step is one run of the Slack Workflow Builder step "Invite an external
// guest": the function_executed event's inputs (DESIGN.md "Slack Workflow
// Builder step").
type Step struct {
	// ExecutionID is the step's function_execution_id: the invitation's
	// origin key, and what its completion completes.
	ExecutionID         string
	WorkflowExecutionID string
	// Token is the workflow token the completion is sent with: a
	// credential, kept only in the store and never logged.
	Token string
	// Requester is the person who ran the workflow (the user_context
	// input): the inviter, to whom the policy applies.
	Requester Inviter
	// Email … Justification are the step's string inputs. Groups are
	// policy group names or object IDs separated by ";", as in bulk files;
	// Delivery is "slack_link", "microsoft_email" or "" (the policy's).
	Email, DisplayName, Message, Groups, Delivery, Justification string
}

// FailRefused: the request was refused before anything was sent: the
// policy does not allow it, or an input is invalid (Message says why).
const FailRefused FailureCode = "refused"

// RunStep starts the invitation a workflow step asks for, applying the
// policy to the requester exactly as the dialog does. The step is recorded
// before RunStep returns, so it may be acknowledged then: every run ends
// with one completion, queued in the invitation's outbox when the
// invitation ends (provisioned, failed, or denied by an approver; an
// approval keeps the step in progress until decided). A refused request
// is recorded as a failed invitation, so its completion is queued the same
// way. A re-delivered event (the same ExecutionID) returns the invitation
// of the first and starts nothing. The error is the store's: nothing was
// recorded, and the event should be redelivered.
func (s *Service) RunStep(ctx context.Context, st Step) (*Invitation, error) {
	if st.ExecutionID == "" {
		return nil, errors.New("run step: no function_execution_id")
	}
	o := Origin{Kind: OriginWorkflow, Key: st.ExecutionID, Name: st.WorkflowExecutionID, Token: st.Token}
	who := st.Requester
	r, refused := s.stepRequest(st)
	if refused == "" {
		inv, err := s.submit(ctx, o, who, r)
		var fe FieldErrors
		if !errors.As(err, &fe) {
			return inv, err
		}
		refused = fieldErrorsText(fe, func(f Field) string { return strings.ReplaceAll(string(f), "_", " ") })
	}
	return s.refuse(ctx, o, who, r, refused)
}

// stepRequest turns the step's inputs into a request, or says which input
// is wrong. What Validate checks is left to the submission.
func (s *Service) stepRequest(st Step) (Request, string) {
	p := s.Policy()
	r := Request{Email: strings.TrimSpace(st.Email), DisplayName: strings.TrimSpace(st.DisplayName),
		Message: strings.TrimSpace(st.Message), Justification: strings.TrimSpace(st.Justification)}
	switch {
	case st.Requester.UserID == "":
		return r, "The step has no requester: set its Requested by input to the person who used the workflow."
	case r.Email == "":
		return r, "The email input is empty."
	}
	switch d := Delivery(strings.TrimSpace(st.Delivery)); d {
	case "":
	case DeliverySlackLink, DeliveryMicrosoftEmail:
		r.Delivery = d
	default:
		return r, fmt.Sprintf("The delivery input must be %s or %s, not %q.", DeliverySlackLink, DeliveryMicrosoftEmail, st.Delivery)
	}
	groups, msg := p.ResolveGroups(st.Groups)
	if msg != "" {
		return r, "The groups input: " + msg
	}
	r.Groups = groups
	return r, ""
}

// refuse records a request that was refused before anything was sent as a
// failed invitation, so that the refusal is audited, shown to the
// requester and completes the step once.
func (s *Service) refuse(ctx context.Context, o Origin, who Inviter, r Request, why string) (*Invitation, error) {
	now := s.now()
	inv := &Invitation{ID: s.newID(), Origin: o, Inviter: who, Request: r, State: StateRequested, CreatedAt: now, UpdatedAt: now}
	inv.History = []Event{s.event(inv, who.UserID, "requested", "refused"+o.detail())}
	inv.Failure = &Failure{Code: FailRefused, Message: why, Step: StateRequested}
	if who.UserID != "" { // the requester hears why, as from a failure
		inv.Outbox = append(inv.Outbox, Outgoing{Kind: NoticeFailed, At: now})
	}
	s.setState(inv, StateFailed, ActorBot, "failed", string(FailRefused)+": "+why) // queues the completion
	got, err := s.store.CreateInvitation(ctx, inv)
	switch {
	case errors.Is(err, ErrDuplicate):
		s.log.InfoContext(ctx, "duplicate workflow step", "invitation", got)
		return got, nil
	case err != nil:
		return nil, fmt.Errorf("run step: %w", err)
	}
	s.log.InfoContext(ctx, "workflow step refused", "invitation", got)
	s.flushLater(ctx, got.ID)
	return got, nil
}

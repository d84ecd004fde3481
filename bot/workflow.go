package bot

// The Workflow Builder step "Invite an external guest" (DESIGN.md "Slack
// Workflow Builder step"): a function_executed event starts it; its
// outcome completes it with functions.completeSuccess or
// functions.completeError, authenticated with the event's workflow token.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// functionExecuted is the part of the function_executed event the step
// uses.
type functionExecuted struct {
	Function struct {
		CallbackID string `json:"callback_id"`
	} `json:"function"`
	Inputs              map[string]json.RawMessage `json:"inputs"`
	FunctionExecutionID string                     `json:"function_execution_id"`
	WorkflowExecutionID string                     `json:"workflow_execution_id"`
	BotAccessToken      string                     `json:"bot_access_token"`
}

// ParseStep turns a function_executed event of the step into the step's
// request. The requester is the user_context input's user: Workflow
// Builder fills it from the person who ran the workflow, and a workflow's
// author cannot set it (a user ID input could name anyone). A malformed
// string input is an error; a missing requester is left for the policy to
// refuse.
func ParseStep(teamID string, event json.RawMessage) (flows.Step, error) {
	var ev functionExecuted
	if err := json.Unmarshal(event, &ev); err != nil {
		return flows.Step{}, fmt.Errorf("function_executed: %w", err)
	}
	if ev.Function.CallbackID != FunctionInvite {
		return flows.Step{}, fmt.Errorf("function_executed: unknown step %q", ev.Function.CallbackID)
	}
	if ev.FunctionExecutionID == "" || ev.BotAccessToken == "" {
		return flows.Step{}, errors.New("function_executed: no function_execution_id or workflow token")
	}
	st := flows.Step{ExecutionID: ev.FunctionExecutionID, WorkflowExecutionID: ev.WorkflowExecutionID, Token: ev.BotAccessToken}
	if raw := ev.Inputs[StepRequester]; len(raw) > 0 {
		var uc struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(raw, &uc); err != nil {
			return flows.Step{}, fmt.Errorf("function_executed: input %s is not a user_context", StepRequester)
		}
		st.Requester = flows.Inviter{TeamID: teamID, UserID: uc.ID}
	}
	for name, dst := range map[string]*string{
		StepEmail: &st.Email, StepDisplayName: &st.DisplayName, StepMessage: &st.Message, StepGroups: &st.Groups,
		StepDelivery: &st.Delivery, StepJustification: &st.Justification,
	} {
		raw := ev.Inputs[name]
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return flows.Step{}, fmt.Errorf("function_executed: input %s is not a string", name)
		}
	}
	return st, nil
}

// functionExecuted records the step's run before the event is
// acknowledged: once acknowledged, Slack does not send it again, so a
// crash right after must still find the run in the store. An error (the
// store failed) leaves the event unacknowledged for Slack to redeliver.
func (b *Bot) functionExecuted(ctx context.Context, teamID string, event json.RawMessage) error {
	if b.svc == nil {
		return errors.New("workflow step: no service")
	}
	st, err := ParseStep(teamID, event)
	if err != nil {
		b.log.WarnContext(ctx, "ignored a function_executed event", "err", err)
		return nil // nothing to complete it with, or not ours
	}
	inv, err := b.svc.RunStep(ctx, st)
	if err != nil {
		b.log.ErrorContext(ctx, "workflow step not recorded; Slack will redeliver it", "execution", st.ExecutionID, "err", err)
		return err
	}
	b.log.InfoContext(ctx, "workflow step", "execution", st.ExecutionID, "invitation", inv)
	return nil
}

// StepResult is the step's outputs for a provisioned invitation. The
// redeem link is never one: a workflow may post its outputs in a channel.
func StepResult(inv *flows.Invitation) map[string]string {
	outcome := "invited"
	if inv.Picked {
		outcome = "existing"
	}
	return map[string]string{StepObjectID: inv.ObjectID, StepEmail: inv.Request.Email, StepOutcome: outcome}
}

// completeStep completes the invitation's workflow step with its outcome,
// using the step's workflow token. A step Slack already considers
// completed (a completion delivered before a crash) counts as delivered;
// a completion Slack refuses for good is flows.ErrUndeliverable.
func (b *Bot) completeStep(ctx context.Context, inv *flows.Invitation) error {
	if inv.Origin.Token == "" {
		return fmt.Errorf("%w: no workflow token for step %s", flows.ErrUndeliverable, inv.Origin.Key)
	}
	api := b.workflowClient(inv.Origin.Token)
	var err error
	if inv.State == flows.StateFailed {
		err = api.FunctionCompleteErrorContext(ctx, inv.Origin.Key, FailureReason(inv.Failure))
	} else {
		err = api.FunctionCompleteSuccessContext(ctx, inv.Origin.Key, slack.FunctionCompleteSuccessRequestOptionOutput(StepResult(inv)))
	}
	var se slack.SlackErrorResponse
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && se.Err == "execution_not_in_running_state":
		b.log.InfoContext(ctx, "workflow step was already completed", "execution", inv.Origin.Key)
		return nil
	}
	return classify(err)
}

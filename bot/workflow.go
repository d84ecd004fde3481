package bot

// The Workflow Builder step "Invite an external guest" (DESIGN.md "Slack
// Workflow Builder step"): a function_executed event starts it; its
// outcome completes it with functions.completeSuccess or
// functions.completeError, authenticated with the event's workflow token.

import (
	"encoding/json"
	"errors"
	"fmt"

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

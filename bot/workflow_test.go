package bot

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/flows"
)

func TestParseStep(t *testing.T) {
	event := func(inputs string) json.RawMessage {
		return json.RawMessage(`{"type":"function_executed","function":{"id":"Fn1","callback_id":"invite_external_guest","type":"app",
			"input_parameters":[{"type":"slack#/types/user_context","name":"requester","is_required":true}]},
			"inputs":` + inputs + `,"function_execution_id":"Fx1","workflow_execution_id":"Wx1","event_ts":"1.2","bot_access_token":"xwfp-1"}`)
	}
	st, err := ParseStep("T1", event(`{"requester":{"id":"U0ANN","secret":"s"},"email":"bob@fabrikam.com","display_name":"Bob",
		"message":"Hi","groups":"A; B","delivery":"slack_link","justification":"why","user":"U0EVE"}`))
	want := flows.Step{ExecutionID: "Fx1", WorkflowExecutionID: "Wx1", Token: "xwfp-1", Requester: flows.Inviter{TeamID: "T1", UserID: "U0ANN"},
		Email: "bob@fabrikam.com", DisplayName: "Bob", Message: "Hi", Groups: "A; B", Delivery: "slack_link", Justification: "why"}
	if err != nil || st != want {
		t.Errorf("ParseStep = %+v, %v", st, err)
	}
	// No requester: left for the service to refuse (the step is completed
	// with the reason). A null optional input is empty.
	if st, err := ParseStep("T1", event(`{"email":"bob@fabrikam.com","message":null}`)); err != nil || st.Requester.UserID != "" || st.Message != "" {
		t.Errorf("no requester: %+v, %v", st, err)
	}
	for name, raw := range map[string]json.RawMessage{
		"requester is a user ID": event(`{"requester":"U0ANN","email":"bob@fabrikam.com"}`),
		"email not a string":     event(`{"requester":{"id":"U0ANN"},"email":["bob@fabrikam.com"]}`),
		"another step":           json.RawMessage(`{"function":{"callback_id":"other"},"function_execution_id":"Fx1","bot_access_token":"xwfp-1"}`),
		"no execution ID":        json.RawMessage(`{"function":{"callback_id":"invite_external_guest"},"bot_access_token":"xwfp-1"}`),
		"no workflow token":      json.RawMessage(`{"function":{"callback_id":"invite_external_guest"},"function_execution_id":"Fx1"}`),
		"not JSON":               json.RawMessage(`{`),
	} {
		if _, err := ParseStep("T1", raw); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestHelpMentionsTheStep(t *testing.T) {
	if !strings.Contains(HelpText, "Workflow Builder") || !strings.Contains(HelpText, "Invite an external guest") {
		t.Errorf("the help does not mention the Workflow Builder step:\n%s", HelpText)
	}
}

func TestStepResult(t *testing.T) {
	inv := &flows.Invitation{ObjectID: "o1", Request: flows.Request{Email: "bob@fabrikam.com"}, RedeemURL: "https://login.microsoftonline.com/redeem?x"}
	if got := StepResult(inv); len(got) != len(StepOutputs) || got[StepOutcome] != "invited" || got[StepObjectID] != "o1" || got[StepEmail] != "bob@fabrikam.com" {
		t.Errorf("StepResult = %v", got)
	}
	inv.Picked = true
	if got := StepResult(inv); got[StepOutcome] != "existing" {
		t.Errorf("picked: %v", got)
	}
}

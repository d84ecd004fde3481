package slackfake

// Workflow Builder custom steps ("functions" with function_runtime remote),
// as Slack runs them: a workflow reaching the step sends the app a
// function_executed event carrying the step's inputs, a
// function_execution_id and a workflow token (bot_access_token); the app
// ends the step with functions.completeSuccess (outputs) or
// functions.completeError (a message), authenticated with that token.
// https://docs.slack.dev/reference/events/function_executed
// https://api.slack.com/methods/functions.completeSuccess
// https://api.slack.com/methods/functions.completeError
//
// Token rules the fake applies (Slack's SDKs complete with the workflow
// token; whether the bot token is accepted too is not documented, so the
// fake refuses it): only the workflow token issued for the execution is
// accepted; an xoxb token is not_allowed_token_type, an unknown token
// invalid_auth, another execution's token access_denied. A step completes
// once: any later completion is execution_not_in_running_state.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Param is a function's input or output parameter, as the manifest
// declares it.
type Param struct {
	Name, Type, Title string
	Required          bool
}

// Function is a custom step the app's manifest declares.
type Function struct {
	CallbackID, Title string
	Inputs, Outputs   []Param
}

// Execution is one run of a custom step.
type Execution struct {
	ID                  string // function_execution_id, "Fx…"
	WorkflowExecutionID string // "Wx…"
	Token               string // bot_access_token: the workflow token, "xwfp-…"
	Function            Function
	Inputs              map[string]any
}

// Completion is a functions.completeSuccess or functions.completeError
// call that Slack accepted.
type Completion struct {
	ExecutionID string
	Success     bool
	Outputs     map[string]any // completeSuccess
	Error       string         // completeError's message
	At          time.Time
}

type execution struct {
	Execution
	done bool
}

// DefineFunction declares a custom step, as creating the app from its
// manifest does; StartExecution runs only declared steps.
func (s *Server) DefineFunction(f Function) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.functions == nil {
		s.functions = map[string]Function{}
	}
	s.functions[f.CallbackID] = f
}

// StartExecution starts a run of the declared step callbackID with inputs,
// issuing its function_execution_id and workflow token. It refuses inputs
// the step does not declare and missing required ones: Workflow Builder
// does not publish such a workflow.
func (s *Server) StartExecution(callbackID string, inputs map[string]any) (Execution, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.functions[callbackID]
	if !ok {
		return Execution{}, fmt.Errorf("slackfake: no function %q declared", callbackID)
	}
	for name := range inputs {
		if !slices.ContainsFunc(f.Inputs, func(p Param) bool { return p.Name == name }) {
			return Execution{}, fmt.Errorf("slackfake: function %s has no input %q", callbackID, name)
		}
	}
	for _, p := range f.Inputs {
		if p.Required && inputs[p.Name] == nil {
			return Execution{}, fmt.Errorf("slackfake: function %s needs input %q", callbackID, p.Name)
		}
	}
	x := Execution{ID: "Fx" + strings.ToUpper(randomHex(6)), WorkflowExecutionID: "Wx" + strings.ToUpper(randomHex(6)),
		Token: "xwfp-" + randomHex(12), Function: f, Inputs: maps.Clone(inputs)}
	if s.executions == nil {
		s.executions = map[string]*execution{}
	}
	s.executions[x.ID] = &execution{Execution: x}
	return x, nil
}

// Completions returns the completions Slack accepted for an execution (""
// = all), in order. A correct app has at most one per execution.
func (s *Server) Completions(executionID string) []Completion {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Completion
	for _, c := range s.completions {
		if executionID == "" || c.ExecutionID == executionID {
			out = append(out, c)
		}
	}
	return out
}

// UserContext is a slack#/types/user_context value for a user, as Workflow
// Builder fills a step's user_context input from the person who ran it.
func UserContext(userID string) map[string]any {
	return map[string]any{"id": userID, "secret": randomHex(16)}
}

// functionsComplete answers functions.completeSuccess (success) and
// functions.completeError.
func (s *Server) functionsComplete(success bool) func(http.ResponseWriter, *http.Request, url.Values, map[string]any) any {
	return func(_ http.ResponseWriter, r *http.Request, f url.Values, j map[string]any) any {
		token, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !bearer {
			token = f.Get("token")
		}
		id, _ := j["function_execution_id"].(string)
		outputs, outputsOK := j["outputs"].(map[string]any)
		msg, _ := j["error"].(string)
		if j == nil { // a form body; outputs is JSON text
			id, msg = f.Get("function_execution_id"), f.Get("error")
			outputsOK = json.Unmarshal([]byte(f.Get("outputs")), &outputs) == nil && outputs != nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		var mine *execution
		for _, x := range s.executions {
			if x.Token == token {
				mine = x
			}
		}
		x := s.executions[id]
		switch {
		case token == "":
			return slackErr("not_authed")
		case strings.HasPrefix(token, "xoxb-"):
			return slackErr("not_allowed_token_type")
		case mine == nil:
			return slackErr("invalid_auth")
		case id == "":
			return slackErr("invalid_arguments")
		case x == nil:
			return slackErr("function_execution_not_found")
		case x != mine:
			return slackErr("access_denied")
		case x.done:
			return slackErr("execution_not_in_running_state")
		case success && !validOutputs(x.Function, outputs, outputsOK):
			return slackErr("parameter_validation_failed")
		case !success && msg == "":
			return slackErr("invalid_arguments")
		}
		x.done = true
		c := Completion{ExecutionID: id, Success: success, Error: msg, At: time.Now()}
		if success {
			c.Outputs = maps.Clone(outputs)
		}
		s.completions = append(s.completions, c)
		return map[string]any{"ok": true}
	}
}

// validOutputs checks outputs against the step's declared outputs: an
// object, only declared names, every required one present, strings where
// a string type is declared.
func validOutputs(f Function, outputs map[string]any, ok bool) bool {
	if !ok {
		return false
	}
	for name, v := range outputs {
		i := slices.IndexFunc(f.Outputs, func(p Param) bool { return p.Name == name })
		if i < 0 {
			return false
		}
		if _, isString := v.(string); f.Outputs[i].Type == "string" && !isString {
			return false
		}
	}
	for _, p := range f.Outputs {
		if _, has := outputs[p.Name]; p.Required && !has {
			return false
		}
	}
	return true
}

// FunctionExecutedEvent is the function_executed inner event for x, as
// Slack sends it: the function's definition (parameters as arrays),
// inputs, the execution IDs and the workflow token.
func (p *Player) FunctionExecutedEvent(x Execution) map[string]any {
	params := func(ps []Param) []any {
		out := []any{}
		for _, q := range ps {
			out = append(out, map[string]any{"type": q.Type, "name": q.Name, "title": q.Title, "description": "", "is_required": q.Required})
		}
		return out
	}
	now := p.now()
	return map[string]any{
		"type": "function_executed",
		"function": map[string]any{
			"id": "Fn" + strings.ToUpper(randomHex(5)), "callback_id": x.Function.CallbackID, "title": x.Function.Title,
			"description": "", "type": "app", "input_parameters": params(x.Function.Inputs),
			"output_parameters": params(x.Function.Outputs), "app_id": AppID,
			"date_created": now.Add(-time.Hour).Unix(), "date_updated": now.Add(-time.Hour).Unix(), "date_deleted": 0,
		},
		"inputs": x.Inputs, "function_execution_id": x.ID, "workflow_execution_id": x.WorkflowExecutionID,
		"event_ts": eventTS(now), "bot_access_token": x.Token,
	}
}

// FunctionExecuted starts a run of the declared step callbackID (see
// StartExecution) and delivers its function_executed event to the bot
// (signed HTTP or Socket Mode). To redeliver the same event, build it with
// EventCallback(FunctionExecutedEvent(x)) and use SendEvent.
func (p *Player) FunctionExecuted(ctx context.Context, callbackID string, inputs map[string]any) (Execution, Response, error) {
	x, err := p.Slack.StartExecution(callbackID, inputs)
	if err != nil {
		return Execution{}, Response{}, err
	}
	resp, err := p.Event(ctx, p.FunctionExecutedEvent(x))
	return x, resp, err
}

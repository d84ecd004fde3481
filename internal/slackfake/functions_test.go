package slackfake

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
)

var testStep = Function{CallbackID: "invite_external_guest", Title: "Invite",
	Inputs:  []Param{{Name: "requester", Type: "slack#/types/user_context", Required: true}, {Name: "email", Type: "string", Required: true}, {Name: "message", Type: "string"}},
	Outputs: []Param{{Name: "object_id", Type: "string", Required: true}, {Name: "outcome", Type: "string"}},
}

func TestFunctionExecutedOverHTTP(t *testing.T) {
	s, p, bot := httpPlayer(t)
	ctx := t.Context()
	if _, _, err := p.FunctionExecuted(ctx, "invite_external_guest", nil); err == nil {
		t.Error("ran an undeclared step")
	}
	s.DefineFunction(testStep)
	for _, in := range []map[string]any{{"email": "a@b.example"}, {"requester": UserContext("U0ANN"), "email": "a@b.example", "user": "U0EVE"}} {
		if _, _, err := p.FunctionExecuted(ctx, "invite_external_guest", in); err == nil {
			t.Errorf("ran the step with inputs %v", in)
		}
	}
	x, resp, err := p.FunctionExecuted(ctx, "invite_external_guest", map[string]any{"requester": UserContext("U0ANN"), "email": "bob@fabrikam.example"})
	if err != nil || resp.Status != http.StatusOK {
		t.Fatalf("FunctionExecuted: %v %+v", err, resp)
	}
	got := bot.last(t)
	if got.Path != "/slack/events" || got.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request: %s %v", got.Path, got.Header)
	}
	ev, err := slackevents.ParseEvent(got.Body, slackevents.OptionNoVerifyToken())
	if err != nil || ev.Type != slackevents.CallbackEvent || ev.TeamID != Team {
		t.Fatalf("ParseEvent: %v %+v", err, ev)
	}
	fe, ok := ev.InnerEvent.Data.(*slackevents.FunctionExecutedEvent)
	if !ok {
		t.Fatalf("inner event = %#v", ev.InnerEvent.Data)
	}
	req, _ := fe.Inputs["requester"].(map[string]any)
	if fe.Type != "function_executed" || fe.Function.CallbackID != "invite_external_guest" || fe.Function.Type != "app" || fe.Function.AppID != AppID ||
		len(fe.Function.InputParameters) != 3 || fe.Function.InputParameters[0].Name != "requester" || !fe.Function.InputParameters[0].IsRequired ||
		len(fe.Function.OutputParameters) != 2 || fe.FunctionExecutionID != x.ID || !strings.HasPrefix(x.ID, "Fx") ||
		fe.WorkflowExecutionID != x.WorkflowExecutionID || fe.BotAccessToken != x.Token || !strings.HasPrefix(x.Token, "xwfp-") ||
		fe.EventTs == "" || req["id"] != "U0ANN" || req["secret"] == "" || fe.Inputs["email"] != "bob@fabrikam.example" {
		t.Errorf("function_executed = %+v", fe)
	}
}

func TestFunctionExecutedOverSocketMode(t *testing.T) {
	s := New()
	defer s.Close()
	s.DefineFunction(testStep)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	p := &Player{Socket: true, Team: Team, Slack: s}
	sm := socketmode.New(client(s, slack.OptionAppLevelToken("xapp-1-test")))
	go func() { _ = sm.RunContext(ctx) }()
	got := make(chan *slackevents.FunctionExecutedEvent, 2)
	go func() {
		for evt := range sm.Events {
			if evt.Type != socketmode.EventTypeEventsAPI {
				continue
			}
			_ = sm.AckCtx(ctx, evt.Request.EnvelopeID, nil)
			fe, _ := evt.Data.(slackevents.EventsAPIEvent).InnerEvent.Data.(*slackevents.FunctionExecutedEvent)
			got <- fe
		}
	}()
	if err := s.WaitConnected(ctx, 1); err != nil {
		t.Fatal(err)
	}
	x, resp, err := p.FunctionExecuted(ctx, "invite_external_guest", map[string]any{"requester": UserContext("U0ANN"), "email": "bob@fabrikam.example"})
	if err != nil || resp.Status != http.StatusOK {
		t.Fatalf("FunctionExecuted: %v %+v", err, resp)
	}
	if fe := <-got; fe == nil || fe.FunctionExecutionID != x.ID || fe.BotAccessToken != x.Token {
		t.Errorf("function_executed = %+v", fe)
	}
	// A redelivery is the same event.
	if _, err := p.SendEvent(ctx, p.EventCallback(p.FunctionExecutedEvent(x)), 1, "timeout"); err != nil {
		t.Fatal(err)
	}
	if fe := <-got; fe == nil || fe.FunctionExecutionID != x.ID {
		t.Errorf("redelivered = %+v", fe)
	}
}

func TestFunctionComplete(t *testing.T) {
	s := New()
	defer s.Close()
	s.DefineFunction(testStep)
	ctx := t.Context()
	x1, err := s.StartExecution("invite_external_guest", map[string]any{"requester": UserContext("U0ANN"), "email": "a@b.example"})
	if err != nil {
		t.Fatal(err)
	}
	x2, _ := s.StartExecution("invite_external_guest", map[string]any{"requester": UserContext("U0ANN"), "email": "c@d.example"})
	wf1 := slack.New(x1.Token, slack.OptionAPIURL(s.APIURL()))
	out := func(m map[string]string) slack.FunctionCompleteSuccessRequestOption {
		return slack.FunctionCompleteSuccessRequestOptionOutput(m)
	}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"bot token", client(s).FunctionCompleteSuccessContext(ctx, x1.ID, out(map[string]string{"object_id": "o"})), "not_allowed_token_type"},
		{"unknown token", slack.New("xwfp-nope", slack.OptionAPIURL(s.APIURL())).FunctionCompleteErrorContext(ctx, x1.ID, "no"), "invalid_auth"},
		{"another execution", wf1.FunctionCompleteErrorContext(ctx, x2.ID, "no"), "access_denied"},
		{"unknown execution", wf1.FunctionCompleteErrorContext(ctx, "Fx0", "no"), "function_execution_not_found"},
		{"no outputs", wf1.FunctionCompleteSuccessContext(ctx, x1.ID), "parameter_validation_failed"},
		{"missing required output", wf1.FunctionCompleteSuccessContext(ctx, x1.ID, out(map[string]string{"outcome": "invited"})), "parameter_validation_failed"},
		{"undeclared output", wf1.FunctionCompleteSuccessContext(ctx, x1.ID, out(map[string]string{"object_id": "o", "redeem_url": "x"})), "parameter_validation_failed"},
		{"empty error", wf1.FunctionCompleteErrorContext(ctx, x1.ID, ""), "invalid_arguments"},
	} {
		if c.err == nil || c.err.Error() != c.want {
			t.Errorf("%s: %v, want %s", c.name, c.err, c.want)
		}
	}
	if n := len(s.Completions("")); n != 0 {
		t.Fatalf("%d completions recorded after refused calls", n)
	}
	if err := wf1.FunctionCompleteSuccessContext(ctx, x1.ID, out(map[string]string{"object_id": "o1", "outcome": "invited"})); err != nil {
		t.Fatal(err)
	}
	if err := wf1.FunctionCompleteErrorContext(ctx, x1.ID, "late"); err == nil || err.Error() != "execution_not_in_running_state" {
		t.Errorf("second completion: %v", err)
	}
	// completeError with a form body and the token field.
	form := url.Values{"token": {x2.Token}, "function_execution_id": {x2.ID}, "error": {"Denied by an approver"}}
	resp, err := http.PostForm(s.APIURL()+"functions.completeError", form)
	if err != nil {
		t.Fatal(err)
	}
	var ans map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if ans["ok"] != true {
		t.Errorf("form completeError: %v", ans)
	}
	cs := s.Completions("")
	if len(cs) != 2 || cs[0].ExecutionID != x1.ID || !cs[0].Success || cs[0].Outputs["object_id"] != "o1" || cs[0].Outputs["outcome"] != "invited" ||
		cs[1].ExecutionID != x2.ID || cs[1].Success || cs[1].Error != "Denied by an approver" || len(s.Completions(x2.ID)) != 1 {
		t.Errorf("completions = %+v", cs)
	}
}

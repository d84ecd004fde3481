package slackfake

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

// outcome is how slack-go saw a call: "ok", "ratelimited <after>", the
// HTTP status, or Slack's error.
func outcome(err error) string {
	var rl *slack.RateLimitedError
	var sc slack.StatusCodeError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &rl):
		return "ratelimited " + rl.RetryAfter.String()
	case errors.As(err, &sc):
		return sc.Status
	}
	return slackError(err)
}

func TestChaosIsSeededAndSlackShaped(t *testing.T) {
	run := func(seed int64) []string {
		s := New()
		defer s.Close()
		s.SetChaos("chat.postMessage", Chaos{RateLimited: 0.2, RetryAfter: "2", ServerError: 0.2, Internal: 0.2, Seed: seed})
		api := client(s)
		var out []string
		for range 100 {
			_, _, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("hi", false))
			out = append(out, outcome(err))
		}
		// Only the method with chaos fails, and failed calls post nothing.
		if _, _, _, err := api.OpenConversationContext(t.Context(), &slack.OpenConversationParameters{Users: []string{"U1"}}); err != nil {
			t.Errorf("conversations.open: %v", err)
		}
		if n := len(s.Messages()); n == 0 || n != count(out, "ok") {
			t.Errorf("%d messages for %d successful posts", n, count(out, "ok"))
		}
		st := s.ChaosStats()
		if st.Calls != 100 || st.Failed["ratelimited"] != count(out, "ratelimited 2s") {
			t.Errorf("stats = %+v", st)
		}
		return out
	}
	a, b, c := run(1), run(1), run(2)
	if !slices.Equal(a, b) {
		t.Errorf("the same seed gave different failures:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Error("different seeds gave the same failures")
	}
	kinds := map[string]int{}
	for _, o := range a {
		kinds[o]++
	}
	for _, k := range []string{"ok", "ratelimited 2s", "internal_error", "fatal_error"} {
		if kinds[k] == 0 {
			t.Errorf("no %q in %v", k, kinds)
		}
	}
	fives := kinds["500 Internal Server Error"] + kinds["502 Bad Gateway"] + kinds["503 Service Unavailable"] + kinds["504 Gateway Timeout"]
	if fives == 0 || kinds["ok"] < 25 || kinds["ok"] > 55 {
		t.Errorf("outcomes = %v", kinds)
	}
}

func count(xs []string, x string) int {
	n := 0
	for _, y := range xs {
		if y == x {
			n++
		}
	}
	return n
}

func TestChaosAllMethodsLatencyAndRemoval(t *testing.T) {
	s := New()
	defer s.Close()
	api := client(s)
	s.SetChaos("", Chaos{Latency: 20 * time.Millisecond, Jitter: 10 * time.Millisecond})
	start := time.Now()
	if _, err := api.GetUserInfoContext(t.Context(), "U1"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("answered after %v, want ≥ 20 ms", d)
	}
	s.SetChaos("", Chaos{ServerError: 1, Statuses: []int{503}})
	s.SetChaos("users.info", Chaos{RateLimited: 1}) // a method's own chaos wins
	if _, err := api.GetUserInfoContext(t.Context(), "U1"); outcome(err) != "ratelimited 1s" {
		t.Errorf("users.info: %v", err)
	}
	if _, _, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("hi", false)); outcome(err) != "503 Service Unavailable" {
		t.Errorf("chat.postMessage: %v", err)
	}
	if c := s.Calls("chat.postMessage"); len(c) != 1 || c[0].Error != "503" {
		t.Errorf("recorded = %+v", c)
	}
	// A scripted fault takes precedence over the chaos.
	s.Fail("chat.postMessage", 1, Fault{Error: "channel_not_found"})
	if _, _, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("hi", false)); outcome(err) != "channel_not_found" {
		t.Errorf("scripted fault: %v", err)
	}
	s.SetChaos("", Chaos{})
	s.SetChaos("users.info", Chaos{})
	if _, _, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("hi", false)); err != nil {
		t.Errorf("after removing the chaos: %v", err)
	}
}

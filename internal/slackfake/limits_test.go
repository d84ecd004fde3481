package slackfake

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

// With limits on, a Tier 3 method admits 50 calls a minute and answers the
// 51st as Slack does: 429, Retry-After, ratelimited; other methods and
// other channels keep their own counts. With limits off nothing is limited.
func TestEnforceLimits(t *testing.T) {
	s := New()
	defer s.Close()
	api := client(s)
	ctx := t.Context()
	for i := range Tier3 + 5 { // off: no limit
		if _, err := api.GetUserByEmailContext(ctx, fmt.Sprintf("nobody%d@x.com", i)); slackError(err) != "users_not_found" {
			t.Fatalf("limits off, call %d: %v", i, err)
		}
	}
	s.EnforceLimits(true)
	for i := range Tier3 {
		if _, err := api.GetUserByEmailContext(ctx, fmt.Sprintf("nobody%d@x.com", i)); slackError(err) != "users_not_found" {
			t.Fatalf("call %d within Tier 3: %v", i+1, err)
		}
	}
	_, err := api.GetUserByEmailContext(ctx, "one-more@x.com")
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter < time.Second || rl.RetryAfter > time.Minute {
		t.Fatalf("call 51: %v, want a RateLimitedError with Retry-After within a minute", err)
	}
	if got := s.RateLimited("users.lookupByEmail"); got != 1 {
		t.Errorf("RateLimited = %d, want 1", got)
	}
	// Tier 4 has its own window.
	for i := range Tier4 {
		if _, err := api.GetUserInfoContext(ctx, fmt.Sprintf("U%d", i)); err != nil {
			t.Fatalf("users.info %d: %v", i+1, err)
		}
	}
	if _, err := api.GetUserInfoContext(ctx, "U0X"); !errors.As(err, &rl) {
		t.Errorf("users.info 101: %v, want ratelimited", err)
	}
	// chat.postMessage: one per second per channel; a user ID is its DM.
	if _, _, err := api.PostMessageContext(ctx, "U0ANN", slack.MsgOptionText("1", false)); err != nil {
		t.Fatalf("first message: %v", err)
	}
	if _, _, err := api.PostMessageContext(ctx, DMChannel("U0ANN"), slack.MsgOptionText("2", false)); !errors.As(err, &rl) || rl.RetryAfter != time.Second {
		t.Errorf("second message to the same DM at once: %v, want ratelimited with Retry-After 1", err)
	}
	if _, _, err := api.PostMessageContext(ctx, "U0BOB", slack.MsgOptionText("3", false)); err != nil {
		t.Errorf("a message to another channel: %v", err)
	}
	if got, want := s.RateLimited(""), 3; got != want {
		t.Errorf("RateLimited() = %d, want %d", got, want)
	}
	if len(s.Messages()) != 2 {
		t.Errorf("%d messages stored, want 2 (a rate-limited one is not)", len(s.Messages()))
	}
	s.EnforceLimits(false)
	if _, err := api.GetUserInfoContext(ctx, "U0Y"); err != nil {
		t.Errorf("limits off again: %v", err)
	}
}

package bot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/internal/slackfake"
)

// paceObs records what the pacer reports.
type paceObs struct {
	mu                      sync.Mutex
	paced, limited, dropped map[string]int
	limitedOnce             sync.Once
	sawLimit                chan struct{} // closed at the first 429, if set
}

func (o *paceObs) SlackPaced(m string, _ time.Duration) { o.add(&o.paced, m) }
func (o *paceObs) SlackRateLimited(m string) {
	o.add(&o.limited, m)
	if o.sawLimit != nil {
		o.limitedOnce.Do(func() { close(o.sawLimit) })
	}
}
func (o *paceObs) SlackDropped(m string) { o.add(&o.dropped, m) }
func (o *paceObs) add(c *map[string]int, m string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if *c == nil {
		*c = map[string]int{}
	}
	(*c)[m]++
}

// pacedClient is a slack-go client on the fake through a pacer whose
// windows are the fake's scaled by the same factor (a tier's minute is
// window).
func pacedClient(t *testing.T, s *slackfake.Server, window time.Duration, obs PaceObserver) *slack.Client {
	t.Helper()
	p := NewPacer(nil, s.APIURL(), obs).(*pacer)
	p.tier, p.post = scale(tierWindow, window), scale(postEvery, window)
	return slack.New("xoxb-test", slack.OptionAPIURL(s.APIURL()), slack.OptionHTTPClient(&http.Client{Transport: p}))
}

// scale returns d with a minute made window (no overflow).
func scale(d, window time.Duration) time.Duration {
	return time.Duration(float64(d) * float64(window) / float64(time.Minute))
}

// 60 users.lookupByEmail at once (Tier 3: 50 a window) all succeed through
// the pacer with no 429 and no call sent twice; without it, 10 draw a 429.
func TestPacerKeepsWithinTier(t *testing.T) {
	const window = 8 * time.Second // the unpaced burst must fit in it
	burst := func(api *slack.Client) (failed int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := range 60 {
			wg.Go(func() {
				_, err := api.GetUserByEmailContext(t.Context(), fmt.Sprintf("x%d@fabrikam.com", i))
				var se slack.SlackErrorResponse
				if !errors.As(err, &se) || se.Err != "users_not_found" {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return failed
	}
	s := slackfake.New()
	defer s.Close()
	s.EnforceLimits(true)
	s.SetLimitWindow(window)
	if failed := burst(slack.New("xoxb-test", slack.OptionAPIURL(s.APIURL()))); failed != 10 || s.RateLimited("users.lookupByEmail") != 10 {
		t.Fatalf("without the pacer: %d failed, %d ratelimited; want 10 (the test cannot tell otherwise)", failed, s.RateLimited(""))
	}

	s2 := slackfake.New()
	defer s2.Close()
	s2.EnforceLimits(true)
	s2.SetLimitWindow(window)
	obs := &paceObs{}
	if failed := burst(pacedClient(t, s2, window, obs)); failed != 0 {
		t.Errorf("through the pacer: %d calls failed", failed)
	}
	if got, n := s2.RateLimited(""), len(s2.Calls("users.lookupByEmail")); got != 0 || n != 60 {
		t.Errorf("through the pacer: %d ratelimited, %d calls; want 0 and 60", got, n)
	}
	if obs.paced["users.lookupByEmail"] < 10 {
		t.Errorf("paced %d calls, want at least the 10 over the tier", obs.paced["users.lookupByEmail"])
	}
}

// A 429 is waited out: the call is sent again only after Retry-After, and
// so is every other call of that method meanwhile.
func TestPacerWaitsOutRetryAfter(t *testing.T) {
	s := slackfake.New()
	defer s.Close()
	s.Fail("users.info", 1, slackfake.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"})
	obs := &paceObs{sawLimit: make(chan struct{})}
	api := pacedClient(t, s, time.Minute, obs)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { _, errs[0] = api.GetUserInfoContext(ctx, "U0A") })
	select { // the second call starts once the pacer has seen the 429
	case <-obs.sawLimit:
	case <-ctx.Done():
		t.Fatal("no 429 seen")
	}
	wg.Go(func() { _, errs[1] = api.GetUserInfoContext(ctx, "U0B") })
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("calls: %v, %v; want both to succeed after the wait", errs[0], errs[1])
	}
	calls := s.Calls("users.info")
	if len(calls) != 3 || calls[0].Error != "429" {
		t.Fatalf("calls = %+v, want a 429 then two successes", calls)
	}
	for _, c := range calls[1:] {
		if early := c.At.Sub(calls[0].At); early < time.Second {
			t.Errorf("a call %v after the 429, before its Retry-After of 1 s", early)
		}
	}
	if obs.limited["users.info"] != 1 {
		t.Errorf("rate limited reported %d times, want 1", obs.limited["users.info"])
	}
}

// While a method waits out a Retry-After, a best-effort call is dropped
// (not sent), and a call whose deadline comes first gets Slack's 429
// without being sent.
func TestPacerDropsBestEffortAndRespectsDeadlines(t *testing.T) {
	s := slackfake.New()
	defer s.Close()
	s.Fail("views.publish", 1, slackfake.Fault{Status: http.StatusTooManyRequests, RetryAfter: "30"})
	obs := &paceObs{}
	api := pacedClient(t, s, time.Minute, obs)
	home := slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: []slack.Block{section("hi")}}}
	var rl *slack.RateLimitedError
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U0A", View: home}); !errors.As(err, &rl) || rl.RetryAfter != 30*time.Second {
		t.Fatalf("first publish: %v, want Slack's 429 with Retry-After 30 (the deadline leaves no time to wait)", err)
	}
	if _, err := api.PublishViewContext(bestEffort(ctx), slack.PublishViewContextRequest{UserID: "U0A", View: home}); !errors.Is(err, ErrDropped) {
		t.Errorf("best-effort publish during the wait: %v, want ErrDropped", err)
	}
	if _, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U0A", View: home}); !errors.As(err, &rl) || rl.RetryAfter < 20*time.Second {
		t.Errorf("publish with a 5 s deadline during a 30 s wait: %v, want a 429 carrying the rest of the wait", err)
	}
	if n := len(s.Calls("views.publish")); n != 1 {
		t.Errorf("%d views.publish reached Slack, want 1 (the others are not sent)", n)
	}
	if obs.dropped["views.publish"] != 1 {
		t.Errorf("dropped reported %d times, want 1", obs.dropped["views.publish"])
	}
	// Other methods are not held up.
	if _, err := api.GetUserInfoContext(bestEffort(ctx), "U0A"); err != nil {
		t.Errorf("users.info meanwhile: %v", err)
	}
}

// chat.postMessage is paced per channel: a second message to the same DM
// waits (no 429 from the fake's one per second per channel); another
// channel does not.
func TestPacerPostMessagePerChannel(t *testing.T) {
	s := slackfake.New()
	defer s.Close()
	s.EnforceLimits(true)
	api := pacedClient(t, s, time.Minute, nil)
	ctx := t.Context()
	for _, ch := range []string{"U0ANN", "U0ANN", "U0BOB"} {
		if _, _, err := api.PostMessageContext(ctx, ch, slack.MsgOptionText("hi", false)); err != nil {
			t.Fatalf("post to %s: %v", ch, err)
		}
	}
	if n := s.RateLimited(""); n != 0 {
		t.Errorf("%d messages drew a 429", n)
	}
	if msgs := s.Messages(); len(msgs) != 3 {
		t.Errorf("%d messages, want 3", len(msgs))
	}
}

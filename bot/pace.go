package bot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Slack's rate limits are per method, per app and per workspace, counted
// per minute, in tiers (reference/slack.md §4): Tier 2 = 20, Tier 3 = 50,
// Tier 4 = 100 calls a minute; chat.postMessage about one message per
// second per channel. views.open and views.push (Tier 4) are not paced
// ahead: each spends a trigger_id that expires 3 s after a person acted,
// so holding one back only fails it; a 429's Retry-After still holds them.
// Neither is apps.connections.open (Tier 1): Socket Mode reconnects when
// Slack asks it to, and slack-go backs off between failed attempts.
// Methods not listed are not paced ahead either.
var methodTier = map[string]int{
	"bots.info":                    50,
	"chat.postEphemeral":           100,
	"chat.update":                  50,
	"conversations.history":        50,
	"conversations.info":           50,
	"conversations.open":           50,
	"files.completeUploadExternal": 100,
	"files.getUploadURLExternal":   100,
	"files.info":                   100,
	"usergroups.users.list":        20,
	"users.info":                   100,
	"users.lookupByEmail":          50,
	"views.publish":                100,
	"views.update":                 100,
}

// Pacing windows. Each is 10% longer than Slack's: Slack counts a call
// when it arrives, the pacer when it sends it, and latency varies.
const (
	tierWindow    = 66 * time.Second
	postEvery     = 1100 * time.Millisecond // chat.postMessage, per channel
	maxPaceTries  = 3                       // sends of one call that Slack answers 429
	maxBestEffort = time.Second             // a best-effort call waits at most this long
	// defaultRetryAfter is the wait after a 429 without Retry-After
	// (slack-go's own fallback).
	defaultRetryAfter = time.Minute
)

// ErrDropped is returned for a best-effort call (see bestEffort) that would
// have had to wait for Slack's rate limit.
var ErrDropped = errors.New("slack: best-effort call dropped under the rate limit")

// PaceObserver is told what the pacer did (internal/metrics implements it).
type PaceObserver interface {
	// SlackPaced: a call of method waited d for its rate limit.
	SlackPaced(method string, d time.Duration)
	// SlackRateLimited: Slack answered a call of method 429.
	SlackRateLimited(method string)
	// SlackDropped: a best-effort call of method was dropped.
	SlackDropped(method string)
}

type bestEffortKey struct{}

// bestEffort marks ctx's Slack calls as best effort: the pacer drops them
// rather than queue them behind a wait longer than maxBestEffort, and does
// not resend them after a 429.
func bestEffort(ctx context.Context) context.Context {
	return context.WithValue(ctx, bestEffortKey{}, true)
}

func isBestEffort(ctx context.Context) bool { b, _ := ctx.Value(bestEffortKey{}).(bool); return b }

// pacer is the one place every Slack Web API call goes through: it keeps
// each method within its tier, chat.postMessage within one message per
// second per channel, and waits out a 429's Retry-After before that
// method is called again.
type pacer struct {
	next http.RoundTripper
	base *url.URL
	obs  PaceObserver
	now  func() time.Time
	// tier and post are the windows (tierWindow, postEvery; tests shorten
	// them).
	tier, post time.Duration

	mu    sync.Mutex
	lanes map[string]*lane // method, or "chat.postMessage <channel>"
}

// lane is one rate limit: the send times reserved in its window, and until
// when a 429 closed it.
type lane struct {
	sent    []time.Time // oldest first; the last may be in the future
	blocked time.Time
}

var apiMethod = regexp.MustCompile(`^[a-z]+(\.[A-Za-z]+)+$`)

// NewPacer returns next (nil: http.DefaultTransport) pacing the Web API
// calls under apiURL (Slack's base URL) by method; other requests (file
// uploads and downloads) pass through. Give it to slack-go's client
// (slack.OptionHTTPClient), so every call goes through it. obs may be nil.
//
// A call waits until its method's window admits it (Tier 2: 20, Tier 3: 50,
// Tier 4: 100 calls in 66 s; chat.postMessage: one per 1.1 s per channel)
// and any Retry-After Slack gave for the method has passed. A call that
// Slack still answers 429 is sent again after Retry-After (at most three
// sends) if its context's deadline leaves time for it; otherwise the 429
// goes to the caller (slack-go: *slack.RateLimitedError), and a call whose
// deadline comes before its turn gets a 429 with the wait as Retry-After
// without being sent. A best-effort call (bestEffort) is dropped
// (ErrDropped) instead of waiting longer than a second, and is never
// resent.
func NewPacer(next http.RoundTripper, apiURL string, obs PaceObserver) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	base, err := url.Parse(apiURL)
	if err != nil {
		base = &url.URL{}
	}
	return &pacer{next: next, base: base, obs: obs, now: time.Now, tier: tierWindow, post: postEvery, lanes: map[string]*lane{}}
}

func (p *pacer) RoundTrip(r *http.Request) (*http.Response, error) {
	rest, ok := strings.CutPrefix(r.URL.Path, strings.TrimSuffix(p.base.Path, "/")+"/")
	if !ok || r.URL.Host != p.base.Host || !apiMethod.MatchString(rest) {
		return p.next.RoundTrip(r)
	}
	method := rest
	key, n, per := method, methodTier[method], p.tier
	if method == "chat.postMessage" {
		ch, err := formValue(r, "channel")
		if err != nil {
			return nil, err
		}
		key, n, per = method+" "+ch, 1, p.post
	}
	ctx := r.Context()
	best := isBestEffort(ctx)
	for try := 1; ; try++ {
		at, err := p.reserve(method, key, n, per, best)
		if err != nil {
			return nil, err
		}
		if wait := at.Sub(p.now()); wait > 0 {
			if dl, ok := ctx.Deadline(); ok && dl.Before(at) {
				p.release(key, at)
				return tooSoon(r, wait), nil
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				p.release(key, at)
				return nil, ctx.Err()
			case <-t.C:
			}
			if p.obs != nil {
				p.obs.SlackPaced(method, wait)
			}
		}
		req := r
		if try > 1 {
			if req, err = rewind(r); err != nil {
				return nil, err
			}
		}
		resp, err := p.next.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusTooManyRequests {
			return resp, err
		}
		after := retryAfter(resp.Header.Get("Retry-After"))
		p.block(key, p.now().Add(after))
		if p.obs != nil {
			p.obs.SlackRateLimited(method)
		}
		dl, hasDL := ctx.Deadline()
		if best || try >= maxPaceTries || (r.Body != nil && r.GetBody == nil) || (hasDL && dl.Before(p.now().Add(after))) {
			return resp, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// reserve returns the earliest time key's lane admits one more call, and
// records the call then. A best-effort call that would wait longer than
// maxBestEffort is not recorded: ErrDropped.
func (p *pacer) reserve(method, key string, n int, per time.Duration, best bool) (time.Time, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	l := p.lanes[key]
	if l == nil {
		l = &lane{}
		p.lanes[key] = l
	}
	for len(l.sent) > 0 && now.Sub(l.sent[0]) >= per {
		l.sent = l.sent[1:]
	}
	at := now
	if l.blocked.After(at) {
		at = l.blocked
	}
	if n > 0 {
		if len(l.sent) >= n {
			at = later(at, l.sent[len(l.sent)-n].Add(per))
		}
		if len(l.sent) > 0 {
			at = later(at, l.sent[len(l.sent)-1]) // keep the lane in order
		}
	}
	if best && at.Sub(now) > maxBestEffort {
		if p.obs != nil {
			p.obs.SlackDropped(method)
		}
		return time.Time{}, fmt.Errorf("%s: %w", method, ErrDropped)
	}
	if n > 0 {
		l.sent = append(l.sent, at)
	}
	return at, nil
}

// release gives back a reservation that was not used.
func (p *pacer) release(key string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.lanes[key]; l != nil {
		for i, t := range l.sent {
			if t.Equal(at) {
				l.sent = append(l.sent[:i], l.sent[i+1:]...)
				break
			}
		}
	}
}

// block closes key's lane until t (a 429's Retry-After).
func (p *pacer) block(key string, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.lanes[key]; l != nil && t.After(l.blocked) {
		l.blocked = t
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// retryAfter reads a Retry-After header (whole seconds, as Slack sends it).
func retryAfter(h string) time.Duration {
	if s, err := strconv.ParseFloat(strings.TrimSpace(h), 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second))
	}
	return defaultRetryAfter
}

// tooSoon is the answer to a call whose deadline comes before its turn: a
// 429 as Slack would give, not sent.
func tooSoon(r *http.Request, wait time.Duration) *http.Response {
	secs := int((wait + time.Second - 1) / time.Second)
	body := `{"ok":false,"error":"ratelimited"}`
	return &http.Response{
		Status: "429 Too Many Requests", StatusCode: http.StatusTooManyRequests,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Retry-After": {strconv.Itoa(secs)}, "Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Request: r,
	}
}

// formValue reads a field of a form-encoded request body, leaving the body
// readable.
func formValue(r *http.Request, field string) (string, error) {
	if r.Body == nil {
		return r.URL.Query().Get(field), nil
	}
	var body []byte
	var err error
	if r.GetBody != nil {
		var rc io.ReadCloser
		if rc, err = r.GetBody(); err == nil {
			body, err = io.ReadAll(rc)
			rc.Close()
		}
	} else {
		body, err = io.ReadAll(r.Body)
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	if err != nil {
		return "", err
	}
	f, _ := url.ParseQuery(string(body))
	return f.Get(field), nil
}

// rewind returns a copy of r with a fresh body, to send it again.
func rewind(r *http.Request) (*http.Request, error) {
	c := r.Clone(r.Context())
	if r.GetBody != nil {
		b, err := r.GetBody()
		if err != nil {
			return nil, err
		}
		c.Body = b
	}
	return c, nil
}

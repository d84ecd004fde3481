package slackfake

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Slack's published rate-limit tiers: calls per minute per method, per app
// and per workspace (reference/slack.md §4.1). The fake serves one app in
// one workspace, so its windows are per method.
const (
	Tier1 = 1
	Tier2 = 20
	Tier3 = 50
	Tier4 = 100
)

// methodTiers are the per-method tiers Slack publishes (reference/slack.md
// §4.2). Methods not listed (auth.test, the special tiers) are not limited
// by the fake; chat.postMessage has its own rule (postMessageEvery).
var methodTiers = map[string]int{
	"apps.connections.open":        Tier1,
	"bots.info":                    Tier3,
	"chat.postEphemeral":           Tier4,
	"chat.update":                  Tier3,
	"conversations.history":        Tier3,
	"conversations.info":           Tier3,
	"conversations.open":           Tier3,
	"files.completeUploadExternal": Tier4,
	"files.getUploadURLExternal":   Tier4,
	"files.info":                   Tier4,
	"usergroups.users.list":        Tier2,
	"users.info":                   Tier4,
	"users.lookupByEmail":          Tier3,
	"views.open":                   Tier4,
	"views.publish":                Tier4,
	"views.push":                   Tier4,
	"views.update":                 Tier4,
}

// postMessageEvery is chat.postMessage's limit: one message per second per
// channel ("short bursts >1 allowed", with no guarantee; the fake allows
// none).
const postMessageEvery = time.Second

// limitWindow is the span of a tier's count.
const limitWindow = time.Minute

// EnforceLimits switches Slack's published rate limits on (or off, the
// default): each method admits at most its tier's calls in any minute
// (Tier 2 = 20, Tier 3 = 50, Tier 4 = 100) and chat.postMessage one
// message per second per channel. A call over its limit is answered as
// Slack answers it: HTTP 429 with a Retry-After header (whole seconds until
// the call would fit) and {"ok":false,"error":"ratelimited"}; it is
// recorded with Error "ratelimited" and does not count against the window.
func (s *Server) EnforceLimits(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = on
	s.admitted = map[string][]time.Time{}
	if s.limitWindow == 0 {
		s.limitWindow = limitWindow
	}
}

// SetLimitWindow shortens (or lengthens) the enforced limits' minute to d,
// and chat.postMessage's second in proportion, so tests can exceed a tier
// and see it recover without waiting a minute.
func (s *Server) SetLimitWindow(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limitWindow = d
}

// RateLimited returns how many calls of method ("" = all) were answered
// with 429 ratelimited.
func (s *Server) RateLimited(method string) int {
	n := 0
	for _, c := range s.Calls(method) {
		if c.Error == "ratelimited" {
			n++
		}
	}
	return n
}

// Tier returns the calls per minute the fake admits for method when limits
// are enforced, or 0 if it does not limit method.
func Tier(method string) int { return methodTiers[method] }

// overLimit admits a call under the enforced limits or answers it with
// 429; it reports whether it answered. s.mu must not be held.
func (s *Server) overLimit(w http.ResponseWriter, name string, call *Call) bool {
	s.mu.Lock()
	at := time.Now() // under the lock: admissions stay in order
	if !s.limits {
		s.mu.Unlock()
		return false
	}
	key, n, per := name, methodTiers[name], s.limitWindow
	if name == "chat.postMessage" {
		ch := call.Form.Get("channel")
		if strings.HasPrefix(ch, "U") {
			ch = DMChannel(ch)
		}
		key, n, per = name+" "+ch, 1, time.Duration(float64(postMessageEvery)*float64(s.limitWindow)/float64(limitWindow))
	}
	if n == 0 {
		s.mu.Unlock()
		return false
	}
	past := s.admitted[key]
	for len(past) > 0 && at.Sub(past[0]) >= per {
		past = past[1:]
	}
	if len(past) < n {
		s.admitted[key] = append(past, at)
		s.mu.Unlock()
		return false
	}
	s.admitted[key] = past
	wait := per - at.Sub(past[0])
	s.mu.Unlock()
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds()))))) // Slack sends whole seconds
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(`{"ok":false,"error":"ratelimited"}` + "\n"))
	call.Error = "ratelimited"
	return true
}

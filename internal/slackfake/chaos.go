package slackfake

import (
	"encoding/json"
	"maps"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Chaos makes a Web API method misbehave at random, as Slack does under
// load: rate limits (HTTP 429, Retry-After, {"ok":false,"error":
// "ratelimited"}), server errors (HTTP 5xx), the JSON errors internal_error
// and fatal_error (HTTP 200), and latency. A failed call has no effect.
//
// Each call draws its latency and then one number that picks at most one
// failure: [0, RateLimited) rate-limits, the next ServerError fails with a
// 5xx, the next Internal answers internal_error or fatal_error. The draws
// come from the chaos's own source seeded with Seed, so one sequential
// client sees the same failures for the same seed.
type Chaos struct {
	RateLimited float64 // probability of HTTP 429 "ratelimited"
	RetryAfter  string  // its Retry-After in whole seconds (slack-go parses an integer); "": "1"
	ServerError float64 // probability of an HTTP 5xx
	Statuses    []int   // the 5xx drawn from; nil: 500, 502, 503, 504
	Internal    float64 // probability of internal_error or fatal_error (HTTP 200)
	// Latency is added to every call, plus a uniform random 0..Jitter.
	Latency, Jitter time.Duration
	Seed            int64
}

// ChaosStats counts what the chaos did: per answer ("ratelimited", "503",
// "internal_error", …) how many calls got it.
type ChaosStats struct {
	Calls  int
	Failed map[string]int
}

type chaos struct {
	Chaos
	rng *rand.Rand
}

// SetChaos sets method's chaos ("" = every method without its own); a
// zero Chaos removes it. Scripted faults (Fail) take precedence.
func (s *Server) SetChaos(method string, c Chaos) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.chaos == nil {
		s.chaos = map[string]*chaos{}
	}
	if c.RateLimited == 0 && c.ServerError == 0 && c.Internal == 0 && c.Latency == 0 && c.Jitter == 0 {
		delete(s.chaos, method)
		return
	}
	if c.RetryAfter == "" {
		c.RetryAfter = "1"
	}
	if c.Statuses == nil {
		c.Statuses = []int{500, 502, 503, 504}
	}
	seed := uint64(c.Seed)
	s.chaos[method] = &chaos{Chaos: c, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// ChaosStats returns what the chaos did so far.
func (s *Server) ChaosStats() ChaosStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ChaosStats{Calls: s.chaosStats.Calls, Failed: maps.Clone(s.chaosStats.Failed)}
}

// applyChaos waits the latency and, if the draw says so, answers the call
// with a failure (recorded in call.Error). It reports whether it answered.
func (s *Server) applyChaos(w http.ResponseWriter, r *http.Request, method string, call *Call) bool {
	s.mu.Lock()
	c := s.chaos[method]
	if c == nil {
		c = s.chaos[""]
	}
	if c == nil {
		s.mu.Unlock()
		return false
	}
	d := c.Latency
	if c.Jitter > 0 {
		d += time.Duration(c.rng.Int64N(int64(c.Jitter) + 1))
	}
	u := c.rng.Float64()
	status, errName := 0, ""
	switch {
	case u < c.RateLimited:
		status, errName = http.StatusTooManyRequests, "ratelimited"
	case u < c.RateLimited+c.ServerError && len(c.Statuses) > 0:
		status = c.Statuses[c.rng.IntN(len(c.Statuses))]
		errName = strconv.Itoa(status)
	case u < c.RateLimited+c.ServerError+c.Internal:
		errName = []string{"internal_error", "fatal_error"}[c.rng.IntN(2)]
	}
	if s.chaosStats.Failed == nil {
		s.chaosStats.Failed = map[string]int{}
	}
	s.chaosStats.Calls++
	if errName != "" {
		s.chaosStats.Failed[errName]++
	}
	retryAfter := c.RetryAfter
	s.mu.Unlock()
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-r.Context().Done():
		case <-t.C:
		}
		t.Stop()
	}
	if errName == "" {
		return false
	}
	call.Error = errName
	switch {
	case status == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", retryAfter)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(slackErr("ratelimited"))
	case status != 0:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		_, _ = w.Write([]byte("<html><body>" + http.StatusText(status) + "</body></html>\n"))
	default:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(slackErr(errName))
	}
	return true
}

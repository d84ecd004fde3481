package graphfake

import (
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"
)

// Chaos is a random failure mode, modelled on Microsoft Dev Proxy's
// GraphRandomErrorPlugin (random 429/500/502/503/504/507 with Retry-After),
// RetryAfterPlugin (a second 429 for a client that retries too early) and
// LatencyPlugin, plus dropped connections and lost answers.
//
// Each request draws, in this order and from the chaos's own source seeded
// with Seed: its latency, whether it fails with a status (Rate), which
// status, whether the connection is dropped instead (Reset), and whether
// the side effect happens before the failure (AfterEffect). A single
// sequential client therefore sees the same faults for the same seed;
// concurrent clients see them in arrival order.
type Chaos struct {
	// Rate is the probability (0..1) that a request fails with one of
	// Statuses.
	Rate float64
	// Statuses are the statuses drawn from (uniformly); nil: Dev Proxy's
	// 429, 500, 502, 503, 504, 507.
	Statuses []int
	// RetryAfter is the Retry-After header value ("2", "0.05") of 429 and
	// 503 answers; "" sends none (the client must back off on its own).
	RetryAfter string
	// SecondThrottle answers 429 (with the remaining Retry-After) to any
	// request to the same method and path that arrives before the
	// Retry-After of the last 429 there has elapsed. It needs RetryAfter.
	SecondThrottle bool
	// Latency is added to every answer, plus a uniform random 0..Jitter.
	Latency, Jitter time.Duration
	// Reset is the probability that the connection is dropped (hijacked
	// and closed) instead of answered.
	Reset float64
	// AfterEffect is the probability that a failed (5xx) or dropped request
	// takes effect before failing: the lost-answer case. A 429 never takes
	// effect, as Graph rejects throttled requests before doing anything.
	AfterEffect float64
	// Seed seeds the chaos's random source.
	Seed int64
	// Clock tells SecondThrottle the time; nil: time.Now. Tests whose
	// client sleeps are faked pass a clock that those sleeps advance.
	Clock func() time.Time
}

// DevProxyStatuses are GraphRandomErrorPlugin's default allowed errors.
var DevProxyStatuses = []int{429, 500, 502, 503, 504, 507}

// ChaosStats counts what the chaos did.
type ChaosStats struct {
	Requests        int            // requests (and batch items) the chaos looked at
	Failed          map[int]int    // status → requests failed with it (second throttles included)
	SecondThrottles int            // 429s for retrying before Retry-After elapsed
	SecondThrottled map[string]int // "METHOD path" → its second throttles
	Resets          int            // dropped connections
	AfterEffects    int            // failures or resets whose side effect happened
}

type chaos struct {
	Chaos
	rng *rand.Rand
}

// SetChaos sets the chaos of route ("" = every route without its own,
// which includes POST /$batch itself and each item in a batch). A zero
// Chaos removes it. Reset removes every chaos.
func (t *Tenant) SetChaos(route Route, c Chaos) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.chaos == nil {
		t.chaos, t.throttledUntil = map[Route]*chaos{}, map[string]time.Time{}
	}
	if c.Rate == 0 && c.Reset == 0 && c.Latency == 0 && c.Jitter == 0 && !c.SecondThrottle {
		delete(t.chaos, route)
		return
	}
	if c.Statuses == nil {
		c.Statuses = DevProxyStatuses
	}
	seed := uint64(c.Seed)
	t.chaos[route] = &chaos{Chaos: c, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// ChaosStats returns what the chaos did so far.
func (t *Tenant) ChaosStats() ChaosStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.chaosStats
	s.Failed, s.SecondThrottled = maps.Clone(s.Failed), maps.Clone(s.SecondThrottled)
	return s
}

// chaosOutcome is what the chaos decided for one request.
type chaosOutcome struct {
	latency     time.Duration
	fault       *Fault // nil: answer normally
	reset       bool
	afterEffect bool
}

// rollChaos draws the chaos for a request to route at path. item: a batch
// item (no latency or reset of its own). t.mu must not be held.
func (t *Tenant) rollChaos(route Route, method, path string, item bool) chaosOutcome {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.chaos[route]
	if c == nil {
		c = t.chaos[""]
	}
	if c == nil {
		return chaosOutcome{}
	}
	if t.chaosStats.Failed == nil {
		t.chaosStats.Failed, t.chaosStats.SecondThrottled = map[int]int{}, map[string]int{}
	}
	t.chaosStats.Requests++
	var o chaosOutcome
	o.latency = c.Latency
	if c.Jitter > 0 {
		o.latency += time.Duration(c.rng.Int64N(int64(c.Jitter) + 1))
	}
	if item {
		o.latency = 0
	}
	fail, status := c.rng.Float64() < c.Rate, 0
	if len(c.Statuses) > 0 {
		status = c.Statuses[c.rng.IntN(len(c.Statuses))]
	}
	reset := c.rng.Float64() < c.Reset && !item
	after := c.rng.Float64() < c.AfterEffect
	now := time.Now
	if c.Clock != nil {
		now = c.Clock
	}
	key := method + " " + path
	ra := retryAfterDuration(c.RetryAfter)
	switch until := t.throttledUntil[key]; {
	case c.SecondThrottle && ra > 0 && now().Before(until):
		t.chaosStats.SecondThrottles++
		t.chaosStats.SecondThrottled[key]++
		t.chaosStats.Failed[http.StatusTooManyRequests]++
		f := Throttled(formatSeconds(until.Sub(now())))
		f.Message = "Please retry after the Retry-After period. " + f.Message
		o.fault = &f
		return o
	case reset:
		t.chaosStats.Resets++
		o.reset, o.afterEffect = true, after
	case fail:
		t.chaosStats.Failed[status]++
		f := chaosFault(status, c.RetryAfter)
		f.AfterEffect = after && status != http.StatusTooManyRequests && status >= 500
		o.fault, o.afterEffect = &f, f.AfterEffect
		if status == http.StatusTooManyRequests && ra > 0 {
			t.throttledUntil[key] = now().Add(ra)
		}
	}
	if o.afterEffect {
		t.chaosStats.AfterEffects++
	}
	return o
}

// chaosFault is Graph's answer for status.
func chaosFault(status int, retryAfter string) Fault {
	f := Fault{Status: status, Code: strings.ReplaceAll(http.StatusText(status), " ", ""), Message: http.StatusText(status) + "."}
	switch status {
	case http.StatusTooManyRequests:
		return Throttled(retryAfter)
	case http.StatusServiceUnavailable:
		f = Unavailable()
		f.RetryAfter = retryAfter
	case http.StatusInternalServerError:
		f.Code, f.Message = "generalException", "General exception while processing."
	case http.StatusBadGateway:
		f.Code, f.Message = "BadGateway", "The server received an invalid response from an upstream server."
	case http.StatusGatewayTimeout:
		f.Code, f.Message = "GatewayTimeout", "The request timed out before the service answered."
	case http.StatusInsufficientStorage:
		f.Code, f.Message = "InsufficientStorage", "The service is unable to store the data needed to complete the request."
	}
	if f.Code == "" {
		f.Code = "UnknownError"
	}
	return f
}

// retryAfterDuration parses a Retry-After in (fractional) seconds; 0 if
// empty or not a number.
func retryAfterDuration(s string) time.Duration {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f <= 0 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}

func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(max(d.Seconds(), 0.001), 'f', 3, 64)
}

// applyChaos applies the chaos to a request about to be served: it waits
// the latency and answers the fault or drops the connection, running the
// handler first when the fault has an after-effect. It reports whether it
// handled the request (the caller must not answer it).
func (t *Tenant) applyChaos(w http.ResponseWriter, r *http.Request, route Route, item bool, handler func(http.ResponseWriter)) bool {
	if !t.hasChaos() {
		return false
	}
	o := t.rollChaos(route, r.Method, r.URL.Path, item)
	if !wait(r, o.latency) {
		return true
	}
	if o.fault == nil && !o.reset {
		return false
	}
	if o.afterEffect {
		handler(httptest.NewRecorder())
	}
	if o.reset {
		dropConnection(w)
		return true
	}
	(&fault{Fault: *o.fault}).write(w, r)
	return true
}

func (t *Tenant) hasChaos() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.chaos) > 0
}

// dropConnection closes the client's connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if s, ok := w.(*statusRecorder); ok {
		s.status = 0 // logged as no answer, before the client sees the drop
		s.log()
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil { // not hijackable (HTTP/2): abort the handler instead
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

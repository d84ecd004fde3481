package graphfake

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// statuses returns the statuses of n sequential GET /organization calls.
func statuses(t *testing.T, s *Server, n int) []int {
	t.Helper()
	out := make([]int, n)
	for i := range out {
		out[i] = do(t, s, "good", "GET", "/organization", "").status
	}
	return out
}

func TestChaosIsSeededAndGraphShaped(t *testing.T) {
	run := func(seed int64) []int {
		tn, s := newServer(t)
		tn.SetChaos("", Chaos{Rate: 0.5, RetryAfter: "0.25", Seed: seed})
		return statuses(t, s, 200)
	}
	a, b, c := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Errorf("the same seed gave different faults:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Error("different seeds gave the same faults")
	}
	failed := 0
	for _, st := range a {
		if st != 200 {
			failed++
			if !slices.Contains(DevProxyStatuses, st) {
				t.Errorf("status %d is not one of Dev Proxy's", st)
			}
		}
	}
	if failed < 70 || failed > 130 {
		t.Errorf("%d of 200 failed at rate 0.5", failed)
	}

	tn, s := newServer(t)
	tn.SetChaos(RouteGetOrganization, Chaos{Rate: 1, Statuses: []int{429, 503, 504, 507, 500, 502}, RetryAfter: "0.25", Seed: 1})
	seen := map[int]bool{}
	for range 60 {
		c := do(t, s, "good", "GET", "/organization", "")
		seen[c.status] = true
		code := graphErr(t, c)
		if code == "" || c.header.Get("Content-Type") != "application/json" {
			t.Errorf("%d: code %q, content type %q", c.status, code, c.header.Get("Content-Type"))
		}
		wantRA := c.status == 429 || c.status == 503
		if got := c.header.Get("Retry-After"); (got == "0.25") != wantRA {
			t.Errorf("%d: Retry-After %q", c.status, got)
		}
	}
	if len(seen) != 6 {
		t.Errorf("statuses seen: %v", seen)
	}
	// Other routes are untouched; a zero Chaos removes it.
	if c := do(t, s, "good", "GET", "/users", ""); c.status != 200 {
		t.Errorf("GET /users under chaos of another route: %d", c.status)
	}
	tn.SetChaos(RouteGetOrganization, Chaos{})
	if got := statuses(t, s, 5); slices.ContainsFunc(got, func(st int) bool { return st != 200 }) {
		t.Errorf("after removing the chaos: %v", got)
	}
	st := tn.ChaosStats()
	if st.Requests != 60 || st.Failed[429]+st.Failed[503]+st.Failed[504]+st.Failed[507]+st.Failed[500]+st.Failed[502] != 60 {
		t.Errorf("stats = %+v", st)
	}
}

// A client that retries before Retry-After has elapsed gets another 429
// with what is left of it, as Dev Proxy's RetryAfterPlugin does.
func TestChaosSecondThrottle(t *testing.T) {
	tn, s := newServer(t)
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	tn.SetChaos(RouteListUsers, Chaos{Rate: 1, Statuses: []int{429}, RetryAfter: "0.5", SecondThrottle: true, Clock: clock})
	if c := do(t, s, "good", "GET", "/users", ""); c.status != 429 || c.header.Get("Retry-After") != "0.5" {
		t.Fatalf("first: %d %q", c.status, c.header.Get("Retry-After"))
	}
	// From now on only the second throttle fails requests.
	tn.SetChaos(RouteListUsers, Chaos{RetryAfter: "0.5", SecondThrottle: true, Clock: clock})
	advance(200 * time.Millisecond)
	c := do(t, s, "good", "GET", "/users?$filter=mail%20eq%20'x'", "")
	if c.status != 429 || c.header.Get("Retry-After") != "0.300" || graphErr(t, c) != "TooManyRequests" {
		t.Errorf("early retry: %d %q %v", c.status, c.header.Get("Retry-After"), c.body)
	}
	if c := do(t, s, "good", "GET", "/organization", ""); c.status != 200 {
		t.Errorf("another path was throttled: %d", c.status)
	}
	advance(300 * time.Millisecond)
	if c := do(t, s, "good", "GET", "/users", ""); c.status != 200 {
		t.Errorf("retry after Retry-After: %d", c.status)
	}
	if st := tn.ChaosStats(); st.SecondThrottles != 1 || st.Failed[429] != 2 || st.SecondThrottled["GET /v1.0/users"] != 1 {
		t.Errorf("stats = %+v", st)
	}
}

// rawPost POSTs without failing the test on a transport error.
func rawPost(t *testing.T, s *Server, path, body string) (int, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", s.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer good")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestChaosResetsAndAfterEffects(t *testing.T) {
	tests := []struct {
		name      string
		chaos     Chaos
		status    int // 0: the connection was dropped
		createdOK bool
	}{
		{"Reset", Chaos{Reset: 1}, 0, false},
		{"ResetAfterEffect", Chaos{Reset: 1, AfterEffect: 1}, 0, true},
		{"GatewayTimeout", Chaos{Rate: 1, Statuses: []int{504}}, 504, false},
		{"GatewayTimeoutAfterEffect", Chaos{Rate: 1, Statuses: []int{504}, AfterEffect: 1}, 504, true},
		// Graph rejects throttled requests before doing anything.
		{"ThrottledNeverTakesEffect", Chaos{Rate: 1, Statuses: []int{429}, RetryAfter: "1", AfterEffect: 1}, 429, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tn, s := newServer(t)
			tn.SetChaos(RoutePostInvitations, tt.chaos)
			st, err := rawPost(t, s, "/invitations", invite)
			if st != tt.status || (tt.status == 0) != (err != nil) {
				t.Errorf("status %d, err %v; want %d", st, err, tt.status)
			}
			if n := len(tn.Users()); (n == 1) != tt.createdOK || n > 1 {
				t.Errorf("%d users; want created %v", n, tt.createdOK)
			}
			reqs := tn.Requests()
			if tt.status == 0 && (len(reqs) != 1 || reqs[0].Status != 0) {
				t.Errorf("request log = %+v, want one unanswered request", reqs)
			}
			tn.Reset()
			if st, err := rawPost(t, s, "/invitations", invite); err != nil || st != 201 {
				t.Errorf("after Reset: %d %v", st, err)
			}
		})
	}
}

func TestChaosLatency(t *testing.T) {
	tn, s := newServer(t)
	tn.SetChaos("", Chaos{Latency: 20 * time.Millisecond, Jitter: 20 * time.Millisecond, Seed: 3})
	for range 5 {
		start := time.Now()
		if c := do(t, s, "good", "GET", "/organization", ""); c.status != 200 {
			t.Fatalf("status %d", c.status)
		}
		if d := time.Since(start); d < 20*time.Millisecond || d > 2*time.Second {
			t.Errorf("answered after %v, want 20–40 ms plus overhead", d)
		}
	}
}

// Inside a JSON batch each item draws its own fault: status, Retry-After
// and after-effect in the item's answer, while the batch itself is 200.
func TestChaosInsideBatch(t *testing.T) {
	tn, s := newServer(t)
	tn.AddUser(User{ID: "a"})
	g := tn.AddGroup("G")
	tn.SetChaos(RouteGetUser, Chaos{Rate: 1, Statuses: []int{429}, RetryAfter: "1.5", Reset: 1})
	tn.SetChaos(RouteAddMember, Chaos{Rate: 1, Statuses: []int{500}, AfterEffect: 1})
	c, items := batch(t, s, get("1", "/users/a"), get("2", "/users/a"),
		map[string]any{"id": "3", "method": "POST", "url": "/groups/" + g + "/members/$ref",
			"headers": map[string]string{"Content-Type": "application/json"},
			"body":    map[string]any{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/a"}})
	if c.status != 200 {
		t.Fatalf("batch = %d", c.status)
	}
	for _, id := range []string{"1", "2"} {
		it := items[id]
		e, _ := it.Body["error"].(map[string]any)
		if it.Status != 429 || it.Headers["Retry-After"] != "1.5" || e["code"] != "TooManyRequests" {
			t.Errorf("item %s = %+v", id, it)
		}
	}
	if it := items["3"]; it.Status != 500 || !slices.Equal(tn.GroupMembers(g), []string{"a"}) {
		t.Errorf("item 3 = %+v, members %v: want a 500 that took effect", it, tn.GroupMembers(g))
	}
	// Chaos on the batch itself fails it as a whole.
	tn.Reset()
	tn.SetChaos(RouteBatch, Chaos{Rate: 1, Statuses: []int{503}, RetryAfter: "2"})
	if c, _ := batch(t, s, get("1", "/users/a")); c.status != 503 || c.header.Get("Retry-After") != "2" {
		t.Errorf("batch under chaos = %d %q", c.status, c.header.Get("Retry-After"))
	}
}

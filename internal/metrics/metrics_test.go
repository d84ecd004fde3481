package metrics

import (
	"bytes"
	"go/build"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// scrape GETs m's handler and returns the exposition text.
func scrape(t *testing.T, m *Registry) string {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", w.Code, w.Body)
	}
	return w.Body.String()
}

// value returns the value of series (name and labels, as exposed) in
// text, or -1 if it is absent.
func value(t *testing.T, text, series string) float64 {
	t.Helper()
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	return -1
}

// expect checks each series' value in text.
func expect(t *testing.T, text string, want map[string]float64) {
	t.Helper()
	for series, v := range want {
		if got := value(t, text, series); got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
}

// Ensure what flows reports becomes the documented series.
func TestObserver(t *testing.T) {
	m := New()
	invited := &flows.Invitation{State: flows.StateNotified}
	m.Finished(invited)
	m.Finished(invited)
	m.Finished(&flows.Invitation{State: flows.StateNotified, Picked: true})
	m.Finished(&flows.Invitation{State: flows.StateFailed, Failure: &flows.Failure{Code: flows.FailThrottled}})
	m.Step(flows.StateInviting, 300*time.Millisecond, nil)
	m.Step(flows.StateInviting, time.Second, &flows.DirectoryError{Status: 500})
	m.Waited(flows.WaitThrottled, 2500*time.Millisecond)
	m.Waited(flows.WaitThrottled, 500*time.Millisecond)
	m.Pending(3)
	m.PendingChanged(1)
	m.PendingChanged(1)
	m.PendingChanged(-1)
	m.Accepted(2 * time.Hour)
	text := scrape(t, m)
	expect(t, text, map[string]float64{
		`invitebot_invitations_total{failure="",outcome="invited"}`:           2,
		`invitebot_invitations_total{failure="",outcome="picked_existing"}`:   1,
		`invitebot_invitations_total{failure="throttled",outcome="failed"}`:   1,
		`invitebot_step_duration_seconds_count{result="ok",step="inviting"}`:  1,
		`invitebot_step_duration_seconds_sum{result="error",step="inviting"}`: 1,
		`invitebot_wait_seconds_count{reason="throttled"}`:                    2,
		`invitebot_wait_seconds_sum{reason="throttled"}`:                      3,
		`invitebot_pending_invitations`:                                       4,
		`invitebot_acceptance_latency_seconds_bucket{le="3600"}`:              0,
		`invitebot_acceptance_latency_seconds_bucket{le="14400"}`:             1,
		`invitebot_acceptance_latency_seconds_count`:                          1,
	})
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(text, "\n"+name+" ") {
			t.Errorf("%s is not exposed", name)
		}
	}
}

func TestGraphEndpoint(t *testing.T) {
	for _, tt := range []struct{ path, want string }{
		{"/v1.0/invitations", "/invitations"},
		{"/v1.0/users", "/users"},
		{"/v1.0/$batch", "/$batch"},
		{"/v1.0/domains", "/domains"},
		{"/v1.0/users/0a1b2c3d-1111-2222-3333-444455556666", "/users/{id}"},
		{"/v1.0/users/bob_fabrikam.com%23EXT%23@contoso.onmicrosoft.com", "/users/{id}"},
		{"/v1.0/users/bob@fabrikam.com/sponsors/$ref", "/users/{id}/sponsors/$ref"},
		{"/v1.0/groups/11111111-2222-3333-4444-555555555555/members/$ref", "/groups/{id}/members/$ref"},
		{"/v1.0/groups/11111111-2222-3333-4444-555555555555/members/0a1b2c3d-1111-2222-3333-444455556666/$ref", "/groups/{id}/members/{id}/$ref"},
		{"/v1.0/users/adele", "/users/{id}"},                   // a key that looks like a word is still a key
		{"/v1.0/users/a%2Fb/memberOf", "/users/{id}/memberOf"}, // an escaped slash stays in its key
		{"/v1.0/users('bob@fabrikam.com')", "/{id}"},
		{"/beta/users/0a1b2c3d-1111-2222-3333-444455556666", "/users/{id}"},
		{"/graph-proxy/v1.0/organization", "/organization"},
		{"/v1.0/", "/"},
		{"", "/"},
	} {
		if got := GraphEndpoint(tt.path); got != tt.want {
			t.Errorf("GraphEndpoint(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// Ensure Graph calls are counted by endpoint template and status, and a
// transport error as "error".
func TestGraphTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1.0/invitations":
			w.WriteHeader(http.StatusCreated)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	m := New()
	c := &http.Client{Transport: m.Graph(nil)}
	for _, req := range [][2]string{
		{http.MethodPost, srv.URL + "/v1.0/invitations"},
		{http.MethodPost, srv.URL + "/v1.0/invitations"},
		{http.MethodGet, srv.URL + "/v1.0/users/0a1b2c3d-1111-2222-3333-444455556666?$select=externalUserState"},
		{http.MethodGet, "http://127.0.0.1:1/v1.0/users?$filter=mail%20eq%20'bob@fabrikam.com'"}, // nothing listens
	} {
		r, _ := http.NewRequest(req[0], req[1], nil)
		if resp, err := c.Do(r); err == nil {
			resp.Body.Close()
		}
	}
	text := scrape(t, m)
	expect(t, text, map[string]float64{
		`invitebot_graph_requests_total{endpoint="POST /invitations",status="201"}`:    2,
		`invitebot_graph_requests_total{endpoint="GET /users/{id}",status="404"}`:      1,
		`invitebot_graph_requests_total{endpoint="GET /users",status="error"}`:         1,
		`invitebot_graph_request_duration_seconds_count{endpoint="POST /invitations"}`: 2,
	})
	if strings.Contains(text, "fabrikam") || strings.Contains(text, "select") || strings.Contains(text, "0a1b2c3d") {
		t.Errorf("a query or an ID reached a label:\n%s", text)
	}
}

// Ensure Slack failures are counted, HTTP 200 {"ok":false} included, and
// every answer's body still reaches the caller intact.
func TestSlackTransport(t *testing.T) {
	big := `{"ok":true,"padding":"` + strings.Repeat("x", 3*maxPeek) + `"}`
	late := `{"padding":"` + strings.Repeat("x", maxPeek) + `","ok":false,"error":"too_late"}`
	bodies := map[string]string{
		"/api/chat.postMessage":      `{"ok":false,"error":"channel_not_found","warning":"x"}`,
		"/api/users.info":            `{"ok":true,"user":{"id":"U1"}}`,
		"/api/conversations.history": big,
		"/api/views.update":          `{"warning":"superfluous_charset","ok":false,"error":"Not A Code!"}`,
		"/api/users.lookupByEmail":   late,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/views.open":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/files/upload/v1/CwABAAAAXAo":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, `{"ok":false,"error":"not_json"}`)
		default:
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, _ = io.WriteString(w, bodies[r.URL.Path])
		}
	}))
	defer srv.Close()
	m := New()
	c := &http.Client{Transport: m.Slack(nil, srv.URL+"/api/")}
	for path, want := range bodies {
		resp, err := c.Post(srv.URL+path, "application/x-www-form-urlencoded", strings.NewReader("token=xoxb-secret"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, []byte(want)) {
			t.Errorf("%s: the caller got %d bytes (%v), want the %d sent", path, len(got), err, len(want))
		}
	}
	for _, u := range []string{srv.URL + "/api/views.open", srv.URL + "/files/upload/v1/CwABAAAAXAo", srv.URL + "/files-pri/T1-F1/guests.csv"} {
		if resp, err := c.Post(u, "text/plain", nil); err == nil {
			resp.Body.Close()
		}
	}
	// slack-go itself still reads Slack's error.
	api := slack.New("xoxb-secret", slack.OptionAPIURL(srv.URL+"/api/"), slack.OptionHTTPClient(c))
	_, _, err := api.PostMessage("C1", slack.MsgOptionText("hi", false))
	if err == nil || err.Error() != "channel_not_found" {
		t.Errorf("slack-go got %v, want channel_not_found", err)
	}
	text := scrape(t, m)
	expect(t, text, map[string]float64{
		`invitebot_slack_requests_total{method="chat.postMessage"}`:                         2,
		`invitebot_slack_errors_total{error="channel_not_found",method="chat.postMessage"}`: 2,
		`invitebot_slack_errors_total{error="other",method="views.update"}`:                 1,
		`invitebot_slack_errors_total{error="other",method="users.lookupByEmail"}`:          -1, // ok:false beyond the peek: not seen
		`invitebot_slack_errors_total{error="http_429",method="views.open"}`:                1,
		`invitebot_slack_requests_total{method="other"}`:                                    2,
		`invitebot_slack_errors_total{error="not_json",method="other"}`:                     -1,
	})
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, "invitebot_slack_errors_total{") &&
			(strings.Contains(line, `method="users.info"`) || strings.Contains(line, `method="conversations.history"`)) {
			t.Errorf("an ok answer was counted as an error: %s", line)
		}
	}
	// A transport error: nothing listens there.
	down := &http.Client{Transport: m.Slack(nil, "http://127.0.0.1:1/api/")}
	if _, err := down.Post("http://127.0.0.1:1/api/auth.test", "text/plain", nil); err == nil {
		t.Fatal("a request to a closed port succeeded")
	}
	expect(t, scrape(t, m), map[string]float64{`invitebot_slack_errors_total{error="transport",method="auth.test"}`: 1})
	if strings.Contains(text, "xoxb") || strings.Contains(text, "CwABAAAAXAo") || strings.Contains(text, "guests") {
		t.Errorf("a token or an upload URL reached a label:\n%s", text)
	}
}

// Ensure the package stays an adapter of flows alone: Prometheus, flows
// and the standard library, no Graph SDK, no Slack, no other adapter.
func TestImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		first, _, _ := strings.Cut(imp, "/")
		if strings.Contains(first, ".") && !strings.HasPrefix(imp, "github.com/prometheus/client_golang/") &&
			imp != "github.com/invitebot/invitebot/flows" {
			t.Errorf("internal/metrics imports %s", imp)
		}
	}
}

// Ensure what the Slack pacer reports becomes the documented series.
func TestSlackPacing(t *testing.T) {
	m := New()
	m.SlackRateLimited("views.update")
	m.SlackRateLimited("views.update")
	m.SlackDropped("views.publish")
	m.SlackPaced("users.lookupByEmail", 1500*time.Millisecond)
	expect(t, scrape(t, m), map[string]float64{
		`invitebot_slack_ratelimited_total{method="views.update"}`:          2,
		`invitebot_slack_dropped_total{method="views.publish"}`:             1,
		`invitebot_slack_paced_seconds_count{method="users.lookupByEmail"}`: 1,
		`invitebot_slack_paced_seconds_sum{method="users.lookupByEmail"}`:   1.5,
	})
}

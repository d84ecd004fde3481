package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/slackfake"
)

func TestE2EMetricsAndRequestIDs(t *testing.T) { bothTransports(t, testMetricsAndRequestIDs) }

// One invitation, throttled once by Graph and refused once by Slack, shows
// in GET /metrics; its log lines carry the Slack request's ID, then the
// invitation's.
func testMetricsAndRequestIDs(t *testing.T, h *harness) {
	h.tenant.Fail(graphfake.RoutePostInvitations, 1, graphfake.Throttled("2"))
	h.slack.Fail("chat.postMessage", 1, slackfake.Fault{Error: "internal_error"})
	view := h.open(t, "")
	h.submit(t, view, inviteValues("bob@fabrikam.com", "Bob Smith", "slack_link", emuPortal))
	h.waitDM(t, 1)
	inv := h.invitation(t)
	if inv.State != flows.StateNotified {
		t.Fatalf("record = %s %+v", inv.State, inv.Failure)
	}
	text := h.scrape(t)
	wantSeries(t, text,
		`invitebot_invitations_total{failure="",outcome="invited"} 1`,
		`invitebot_graph_requests_total{endpoint="POST /invitations",status="429"} 1`,
		`invitebot_graph_requests_total{endpoint="POST /invitations",status="201"} 1`,
		`invitebot_graph_requests_total{endpoint="POST /groups/{id}/members/$ref",status="204"} 1`,
		`invitebot_graph_request_duration_seconds_count{endpoint="POST /invitations"} 2`,
		`invitebot_step_duration_seconds_count{result="ok",step="inviting"} 1`,
		`invitebot_step_duration_seconds_count{result="ok",step="provisioned"} 1`,
		`invitebot_wait_seconds_sum{reason="throttled"} 2`,
		`invitebot_wait_seconds_count{reason="slack_retry"} 1`,
		`invitebot_slack_errors_total{error="internal_error",method="chat.postMessage"} 1`,
		`invitebot_pending_invitations 1`,
		// A test binary has no module version or VCS revision.
		`invitebot_build_info{goversion="`+runtime.Version()+`",revision="",version="(devel)"} 1`,
	)
	for _, s := range []string{"fabrikam", inv.ObjectID, emuPortal, "xoxb", emuSecret, "redeem"} {
		if strings.Contains(text, s) {
			t.Errorf("/metrics contains %q", s)
		}
	}

	h.tenant.Redeem(inv.ObjectID)
	if st := h.trackCycle(t); st.Accepted != 1 {
		t.Fatalf("cycle after redemption = %+v, want 1 accepted", st)
	}
	wantSeries(t, h.scrape(t), `invitebot_acceptance_latency_seconds_count 1`, `invitebot_pending_invitations 0`)

	// The submission's lines carry its request ID; the invitation's run
	// (in the background) carries the invitation's ID.
	var requested string
	served := map[string]bool{}
	steps := 0
	for line := range strings.Lines(h.logs.String()) {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		id, _ := l["request_id"].(string)
		switch l["msg"] {
		case "invitation requested":
			requested = id
		case "slack request":
			served[id] = true
		case "invitation step":
			steps++
			if l["invitation_id"] != inv.ID {
				t.Errorf("invitation step line has invitation_id %v, want %s", l["invitation_id"], inv.ID)
			}
		}
	}
	if requested == "" || !served[requested] {
		t.Errorf("the submission's request ID %q is not that of a served Slack request %v", requested, served)
	}
	if steps == 0 {
		t.Error("no invitation step was logged")
	}
}

// scrape GETs /metrics from invitebot's HTTP server.
func (h *harness) scrape(t *testing.T) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(h.ctx, http.MethodGet, h.player.BotURL+"/metrics", nil)
	resp, err := h.player.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v\n%s", resp.StatusCode, err, b)
	}
	return string(b)
}

// wantSeries checks that text has each series line (name, labels, value).
func wantSeries(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if strings.Contains(text, "\n"+l+"\n") {
			continue
		}
		name := strings.FieldsFunc(l, func(r rune) bool { return r == '{' || r == ' ' })[0]
		var got []string
		for line := range strings.Lines(text) {
			if strings.HasPrefix(line, name) {
				got = append(got, strings.TrimSpace(line))
			}
		}
		t.Errorf("/metrics lacks %s; it has:\n%s", l, strings.Join(got, "\n"))
	}
}

// Ensure the process logger adds the IDs a context carries, in both
// formats.
func TestNewLoggerAddsContextIDs(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log := newLogger(&config.Config{LogFormat: format}, &buf)
		log.InfoContext(flows.WithInvitationID(bot.WithRequestID(t.Context(), "r1"), "inv_1"), "x")
		if s := buf.String(); !strings.Contains(s, "request_id") || !strings.Contains(s, "r1") || !strings.Contains(s, "invitation_id") || !strings.Contains(s, "inv_1") {
			t.Errorf("%s line lacks the IDs: %s", format, s)
		}
	}
}

// Package metrics is invitebot's Prometheus instrumentation: a registry of
// its own (with the Go runtime and process collectors) served at
// GET /metrics, a flows.Observer for the invitations, and RoundTrippers
// that count the calls made to Microsoft Graph and to Slack's Web API.
//
// It is the only package that imports the Prometheus client; it imports
// flows for the Observer's types and nothing else of invitebot's. Labels
// are low-cardinality by construction: no label ever holds an email
// address, an object ID, a URL query or a token.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/invitebot/invitebot/flows"
)

// Registry holds invitebot's metrics. Its zero value is not usable: call
// New. Each Registry is independent (tests run several apps in a process).
type Registry struct {
	reg *prometheus.Registry

	invitations   *prometheus.CounterVec
	steps         *prometheus.HistogramVec
	waits         *prometheus.HistogramVec
	pending       prometheus.Gauge
	acceptance    prometheus.Histogram
	graphRequests *prometheus.CounterVec
	graphDuration *prometheus.HistogramVec
	slackRequests *prometheus.CounterVec
	slackErrors   *prometheus.CounterVec
	slackLimited  *prometheus.CounterVec
	slackDropped  *prometheus.CounterVec
	slackPaced    *prometheus.HistogramVec
}

var _ flows.Observer = (*Registry)(nil)

// Histogram buckets, in seconds.
var (
	stepBuckets  = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
	waitBuckets  = []float64{0.05, 0.25, 1, 2.5, 5, 10, 30, 60, 120, 300}
	graphBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 100}
	// acceptBuckets run from a minute to a month.
	acceptBuckets = []float64{60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 4 * 86400, 7 * 86400, 14 * 86400, 30 * 86400}
)

// New returns a Registry with every metric registered.
func New() *Registry {
	m := &Registry{
		reg: prometheus.NewRegistry(),
		invitations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invitebot_invitations_total",
			Help: "Invitations that finished their run, by outcome (invited, picked_existing, converted, failed) and failure code (\"\" unless failed).",
		}, []string{"outcome", "failure"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "invitebot_step_duration_seconds",
			Help:    "Time taken by each step of an invitation, by the state it starts from and its result (ok, error), retry waits included.",
			Buckets: stepBuckets,
		}, []string{"step", "result"}),
		waits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "invitebot_wait_seconds",
			Help:    "Waits before a call to Graph or Slack, by reason (throttled, transient, replication, invite_limit, throttle_window, tracker_gate, slack_retry).",
			Buckets: waitBuckets,
		}, []string{"reason"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "invitebot_pending_invitations",
			Help: "Invitations sent and not yet accepted (externalUserState PendingAcceptance): counted by each tracking cycle, kept up to date in between.",
		}),
		acceptance: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "invitebot_acceptance_latency_seconds",
			Help:    "Time from an invitation (or its last resend) to the guest's acceptance, as the tracker records it.",
			Buckets: acceptBuckets,
		}),
		graphRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invitebot_graph_requests_total",
			Help: "HTTP requests to Microsoft Graph, by endpoint (method and path template) and status (HTTP code, or error).",
		}, []string{"endpoint", "status"}),
		graphDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "invitebot_graph_request_duration_seconds",
			Help:    "Duration of HTTP requests to Microsoft Graph, by endpoint.",
			Buckets: graphBuckets,
		}, []string{"endpoint"}),
		slackRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invitebot_slack_requests_total",
			Help: "Calls to Slack's Web API, by method.",
		}, []string{"method"}),
		slackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invitebot_slack_errors_total",
			Help: "Failed calls to Slack's Web API, by method and error (Slack's error code, http_<status>, or transport).",
		}, []string{"method", "error"}),
		slackLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invitebot_slack_ratelimited_total",
			Help: "Calls to Slack's Web API that Slack answered 429 (ratelimited), by method.",
		}, []string{"method"}),
		slackDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "invitebot_slack_dropped_total",
			Help: "Best-effort calls to Slack's Web API (dialog progress, Home tab refreshes) not made because the method's rate limit would have delayed them, by method.",
		}, []string{"method"}),
		slackPaced: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "invitebot_slack_paced_seconds",
			Help:    "How long calls to Slack's Web API waited for their method's rate limit (tier, or a 429's Retry-After), by method.",
			Buckets: waitBuckets,
		}, []string{"method"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.invitations, m.steps, m.waits, m.pending, m.acceptance,
		m.graphRequests, m.graphDuration, m.slackRequests, m.slackErrors,
		m.slackLimited, m.slackDropped, m.slackPaced,
	)
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Step implements flows.Observer.
func (m *Registry) Step(from flows.State, took time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.steps.WithLabelValues(string(from), result).Observe(took.Seconds())
}

// Finished implements flows.Observer.
func (m *Registry) Finished(inv *flows.Invitation) {
	m.invitations.WithLabelValues(outcome(inv)).Inc()
}

// outcome returns the outcome and failure labels of an invitation that
// finished its run.
func outcome(inv *flows.Invitation) (outcome, failure string) {
	switch {
	case inv.State == flows.StateFailed && inv.Failure != nil:
		return "failed", string(inv.Failure.Code)
	case inv.State == flows.StateFailed:
		return "failed", string(flows.FailInternal)
	case inv.Request.ConvertFrom != "":
		return "converted", ""
	case inv.Picked:
		return "picked_existing", ""
	}
	return "invited", ""
}

// Accepted implements flows.Observer.
func (m *Registry) Accepted(after time.Duration) { m.acceptance.Observe(after.Seconds()) }

// Waited implements flows.Observer.
func (m *Registry) Waited(reason string, d time.Duration) {
	m.waits.WithLabelValues(reason).Observe(d.Seconds())
}

// Pending implements flows.Observer.
func (m *Registry) Pending(n int) { m.pending.Set(float64(n)) }

// PendingChanged implements flows.Observer.
func (m *Registry) PendingChanged(delta int) { m.pending.Add(float64(delta)) }

// SlackPaced records that a Slack call of method waited d for its rate
// limit (bot.PaceObserver).
func (m *Registry) SlackPaced(method string, d time.Duration) {
	m.slackPaced.WithLabelValues(method).Observe(d.Seconds())
}

// SlackRateLimited records a 429 from Slack for method (bot.PaceObserver).
func (m *Registry) SlackRateLimited(method string) { m.slackLimited.WithLabelValues(method).Inc() }

// SlackDropped records a best-effort Slack call of method that was not
// made (bot.PaceObserver).
func (m *Registry) SlackDropped(method string) { m.slackDropped.WithLabelValues(method).Inc() }

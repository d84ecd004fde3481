package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
)

func TestPercentile(t *testing.T) {
	var l latencies
	for i := 100; i >= 1; i-- {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond, 1: time.Millisecond} {
		if got := l.percentile(p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := (latencies{7}).percentile(99); got != 7 {
		t.Errorf("p99 of one = %v", got)
	}
	if got := (latencies(nil)).percentile(50); got != 0 {
		t.Errorf("p50 of none = %v", got)
	}
}

// Under load every command opens its own dialog and every submission is
// acknowledged with its record already stored, while Graph is slow.
func TestLoadEveryRequestServed(t *testing.T) {
	bothTransports(t, func(t *testing.T, h *harness) {
		const n = 50
		open, ack, err := h.loadCommands(h.ctx, n)
		if err != nil || len(open) != n || len(ack) != n {
			t.Fatalf("commands: %d opened, %d acked, %v", len(open), len(ack), err)
		}
		h.tenant.SetLatency("", 5*time.Second)
		sack, err := h.loadSubmissions(h.ctx, n)
		if err != nil || len(sack) != n {
			t.Fatalf("submissions: %d acked, %v", len(sack), err)
		}
		invs, err := h.app.db.Invitations(h.ctx, flows.InvitationFilter{})
		if err != nil || len(invs) != n {
			t.Errorf("%d invitations stored at ack time, want %d (%v)", len(invs), n, err)
		}
	})
}

func TestLoadCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"load", "-n", "5", "-rounds", "2", "-graph-latency", "1s"}, nil, &out, &errb); err != nil {
		t.Fatalf("load: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"2 rounds of 5 concurrent requests over HTTP", "views.open:", "(n=10)", "view_submission ack (Graph 1s)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := run(t.Context(), []string{"load", "-n", "0"}, nil, &out, &errb); err == nil {
		t.Error("load -n 0 accepted")
	}
	out.Reset()
	if err := run(t.Context(), []string{"load", "-track", "45", "-rounds", "2"}, nil, &out, &errb); err != nil {
		t.Fatalf("load -track: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"2 tracking cycles over 45 pending invitations", "Graph requests per cycle: 3 (JSON batches of 20)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run(t.Context(), []string{"load", "-bulk", "30", "-graph-latency", "1ms"}, nil, &out, &errb); err != nil {
		t.Fatalf("load -bulk: %v\n%s", err, errb.String())
	}
	if want := "invited 30 in "; !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "429s from Graph: 0") {
		t.Errorf("load -bulk output:\n%s", out.String())
	}
}

// The benchmarks measure Slack's 3-second deadlines; each iteration is 100
// concurrent requests, and the percentiles over all of them are reported
// as metrics (the README's Performance section quotes them):
//
//	go test -run '^$' -bench . -benchtime 5x ./cmd/invitebot
func BenchmarkSlashCommand(b *testing.B) {
	benchBoth(b, func(b *testing.B, e *emulated) {
		var open, ack latencies
		for b.Loop() {
			o, a, err := e.loadCommands(b.Context(), 100)
			if err != nil {
				b.Fatal(err)
			}
			open, ack = append(open, o...), append(ack, a...)
		}
		report(b, "open", open)
		report(b, "ack", ack)
	})
}

func BenchmarkSubmissionAckSlowGraph(b *testing.B) {
	benchBoth(b, func(b *testing.B, e *emulated) {
		e.tenant.SetLatency("", 5*time.Second)
		var ack latencies
		for b.Loop() {
			a, err := e.loadSubmissions(b.Context(), 100)
			if err != nil {
				b.Fatal(err)
			}
			ack = append(ack, a...)
		}
		report(b, "ack", ack)
	})
}

func benchBoth(b *testing.B, bench func(*testing.B, *emulated)) {
	for name, tr := range map[string]transport{"HTTP": overHTTP, "SocketMode": overSocket} {
		b.Run(name, func(b *testing.B) {
			e, err := startEmulated(filepath.Join(b.TempDir(), "invitebot.db"), slog.New(slog.NewTextHandler(io.Discard, nil)), deps{}, tr)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			bench(b, e)
		})
	}
}

func report(b *testing.B, name string, l latencies) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(l.percentile(50)), name+"-p50-ms")
	b.ReportMetric(ms(l.percentile(99)), name+"-p99-ms")
}

// BenchmarkTrackCycle measures one acceptance-tracking cycle over N pending
// invitations: Graph requests per cycle (JSON batches of 20: ⌈N/20⌉) and
// the cycle's duration. The store skips fsync while seeding; a cycle in
// which nothing changed writes nothing.
func BenchmarkTrackCycle(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("pending=%d", n), func(b *testing.B) {
			e, err := startEmulated(filepath.Join(b.TempDir(), "invitebot.db"), slog.New(slog.NewTextHandler(io.Discard, nil)),
				deps{pollInterval: -1, storeNoSync: true}, overHTTP)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			if _, err := e.seedPending(b.Context(), n); err != nil {
				b.Fatal(err)
			}
			before := e.batchRequests()
			rounds := 0
			var took latencies
			for b.Loop() {
				st, err := e.app.svc.Track(b.Context())
				if err != nil || st.Pending != n {
					b.Fatalf("cycle: %+v, %v; want %d pending", st, err, n)
				}
				took = append(took, st.Duration)
				rounds++
			}
			reqs := float64(e.batchRequests()-before) / float64(rounds)
			b.ReportMetric(reqs, "requests/cycle")
			b.ReportMetric(float64(took.percentile(50))/float64(time.Millisecond), "cycle-p50-ms")
		})
	}
}

// load -calls reports the calls per guest by API and method, the 429s and
// the time to the last DM, with the Slack emulator's limits on.
func TestLoadCallsCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"load", "-calls", "5"}, nil, &out, &errb); err != nil {
		t.Fatalf("load -calls: %v\n%s", err, errb.String())
	}
	for _, want := range []string{"5 inviters at once", "Slack's published rate limits on", "Slack calls per new guest:", "chat.postMessage",
		"Graph calls per new guest:", "POST /invitations", "Slack 429 (ratelimited):", "time to the last of 5 DMs:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := run(t.Context(), []string{"load", "-calls", "-1"}, nil, &out, &errb); err == nil {
		t.Error("load -calls -1 accepted")
	}
}

// Issue 11's goals, counted against the emulators with Slack's published
// limits on: per new guest at most 4 Slack calls (the final dialog, the
// DM to the user ID, the inviter's profile for a first-time inviter, the
// Slack Connect check) and 3 Graph calls (the lookup, POST /invitations,
// the first-time inviter's own lookup for the sponsor), no
// conversations.open, no Home tab nobody opened, and no 429. The dialog's
// intermediate states are best effort and depend on this machine's speed:
// they are reported, not counted against the goal.
func TestLoadCallsWithinGoals(t *testing.T) {
	e, err := startEmulated(filepath.Join(t.TempDir(), "invitebot.db"), slog.New(slog.NewTextHandler(io.Discard, nil)), deps{pollInterval: -1}, overHTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.slack.EnforceLimits(true)
	e.tenant.SetLatency("", 50*time.Millisecond)
	const n = 20
	r, err := e.loadCalls(t.Context(), n)
	if err != nil {
		t.Fatal(err)
	}
	progress := 0
	for _, c := range e.slack.Calls("views.update") {
		if strings.Contains(fmt.Sprint(c.JSON), ":hourglass_flowing_sand:") {
			progress++
		}
	}
	t.Logf("Slack per guest: %s (%d intermediate dialog states); Graph: %s; last DM after %s",
		perGuest(r.Slack, n), progress, perGuest(r.Graph, n), r.LastDM)
	for method, want := range map[string]int{"chat.postMessage": n, "users.info": n, "users.lookupByEmail": n,
		"views.update": n + progress, "conversations.open": 0, "views.publish": 0} {
		if got := r.Slack[method]; got != want {
			t.Errorf("%s: %d calls, want %d", method, got, want)
		}
	}
	total := -progress
	for _, c := range r.Slack {
		total += c
	}
	if total > 4*n {
		t.Errorf("%d Slack calls for %d guests, want at most 4 each", total, n)
	}
	graph := 0
	for _, c := range r.Graph {
		graph += c
	}
	if graph > 3*n || r.Graph["POST /invitations"] != n {
		t.Errorf("Graph calls %v, want at most 3 per guest and one POST /invitations each", r.Graph)
	}
	if r.Limited != 0 {
		t.Errorf("%d Slack calls answered 429, want none", r.Limited)
	}
}

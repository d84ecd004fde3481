//go:build !noemulators

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/metrics"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// callLoad is what loadCalls measured: the API calls n invitations cost.
type callLoad struct {
	Inviters int
	// Slack and Graph count the calls made from the first submission until
	// the app was quiet again, by method (Slack) and endpoint (Graph).
	// views.open (the dialog, before the invitation exists) is not counted.
	Slack, Graph map[string]int
	// Limited counts the Slack calls answered 429 ratelimited.
	Limited int
	// LastDM is the time from the submissions to the last inviter's DM.
	LastDM time.Duration
}

// perGuest renders counts divided by n, largest first: "12.8: 7.0 views.update, …".
func perGuest(counts map[string]int, n int) string {
	total := 0
	keys := slices.Collect(maps.Keys(counts))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(cmp.Compare(counts[b], counts[a]), strings.Compare(a, b)) })
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		total += counts[k]
		parts = append(parts, fmt.Sprintf("%.1f %s", float64(counts[k])/float64(n), k))
	}
	if len(parts) == 0 {
		return "0"
	}
	return fmt.Sprintf("%.1f: %s", float64(total)/float64(n), strings.Join(parts, ", "))
}

// loadCalls has n inviters, each with a Slack profile email, open the
// dialog, then submit at once one new guest each (no groups, no
// attributes, redeem link in Slack), and counts the calls until every DM
// is out and the app has gone quiet.
func (e *emulated) loadCalls(ctx context.Context, n int) (callLoad, error) {
	run := loadSeq.Add(1)
	r := callLoad{Inviters: n, Slack: map[string]int{}, Graph: map[string]int{}}
	user := func(i int) string { return fmt.Sprintf("U0CALL%d_%d", run, i) }
	views := make([]string, n)
	for i := range n {
		e.slack.AddUser(user(i), fmt.Sprintf("inviter%d.%d@contoso.com", run, i), fmt.Sprintf("Inviter %d", i))
		v, err := e.openDialog(ctx, user(i))
		if err != nil {
			return r, err
		}
		views[i] = v
	}
	slackBefore, graphBefore := len(e.slack.Calls("")), len(e.tenant.Requests())
	errs := make([]error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v := inviteValues(fmt.Sprintf("calls%d.%d@fabrikam.com", run, i), "Load Guest", "slack_link")
			resp, err := e.player.Submit(ctx, user(i), views[i], v)
			if err == nil && resp.Status != http.StatusOK {
				err = fmt.Errorf("submission answered %d", resp.Status)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return r, err
	}
	dmed := func() (last time.Time, all bool) {
		for i := range n {
			var at time.Time
			for _, c := range e.slack.Calls("chat.postMessage") {
				if c.Error == "" && (c.Form.Get("channel") == user(i) || c.Form.Get("channel") == slackfake.DMChannel(user(i))) {
					at = c.At
					break
				}
			}
			if at.IsZero() {
				return last, false
			}
			if at.After(last) {
				last = at
			}
		}
		return last, true
	}
	if err := e.slack.WaitFor(ctx, func() bool { _, all := dmed(); return all }); err != nil {
		return r, fmt.Errorf("waiting for the DMs: %w", err)
	}
	last, _ := dmed()
	r.LastDM = last.Sub(start)
	e.app.svc.Wait()
	// Work after the DM (the sponsor, the Slack Connect check) runs in the
	// background: wait until neither API has seen a call for a second.
	quiet := func() int { return len(e.slack.Calls("")) + len(e.tenant.Requests()) }
	for seen, since := quiet(), time.Now(); time.Since(since) < time.Second; {
		if err := flows.SleepContext(ctx, 100*time.Millisecond); err != nil {
			return r, err
		}
		if q := quiet(); q != seen {
			seen, since = q, time.Now()
		}
	}
	for _, c := range e.slack.Calls("")[slackBefore:] {
		if c.Error == "ratelimited" {
			r.Limited++
		}
		if c.Method != "views.open" {
			r.Slack[c.Method]++
		}
	}
	for _, q := range e.tenant.Requests()[graphBefore:] {
		r.Graph[q.Method+" "+metrics.GraphEndpoint(q.Path)]++
	}
	return r, nil
}

// startLoad starts invitebot over HTTP on the emulators with no acceptance
// tracking, for a load run, on the store db ("": a bbolt file in a
// temporary directory); stop ends it and removes the directory.
func startLoad(db string) (e *emulated, stop func(), err error) {
	dir, err := os.MkdirTemp("", "invitebot-load-")
	if err != nil {
		return nil, nil, err
	}
	e, err = startEmulated(cmp.Or(db, filepath.Join(dir, "invitebot.db")), slog.New(slog.NewTextHandler(io.Discard, nil)), deps{pollInterval: -1}, overHTTP)
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return e, func() { e.Close(); os.RemoveAll(dir) }, nil
}

// callsLoadCmd is `invitebot load -calls 50`.
func callsLoadCmd(ctx context.Context, n int, graphLatency time.Duration, limits bool, stdout io.Writer) error {
	e, stop, err := startLoad("")
	if err != nil {
		return err
	}
	defer stop()
	e.slack.EnforceLimits(limits)
	e.tenant.SetInvitationLimit(150, 5*time.Second)
	e.tenant.SetLatency("", graphLatency)
	r, err := e.loadCalls(ctx, n)
	if err != nil {
		return err
	}
	state := "on"
	if !limits {
		state = "off"
	}
	fmt.Fprintf(stdout, "%d inviters at once, each inviting one new guest (no groups, no attributes; Graph %s per call; Slack's published rate limits %s):\n", n, graphLatency, state)
	fmt.Fprintf(stdout, "Slack calls per new guest:   %s\n", perGuest(r.Slack, n))
	fmt.Fprintf(stdout, "Graph calls per new guest:   %s\n", perGuest(r.Graph, n))
	fmt.Fprintf(stdout, "Slack 429 (ratelimited):     %d\n", r.Limited)
	fmt.Fprintf(stdout, "time to the last of %d DMs:  %s\n", n, r.LastDM.Round(10*time.Millisecond))
	return nil
}

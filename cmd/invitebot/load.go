package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/invitebot/invitebot/bot"
)

// latencies are measured durations.
type latencies []time.Duration

// percentile returns the nearest-rank p-th percentile (0 < p <= 100).
func (l latencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

func (l latencies) String() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
	return fmt.Sprintf("p50 %s  p99 %s  max %s  (n=%d)", ms(l.percentile(50)), ms(l.percentile(99)), ms(l.percentile(100)), len(l))
}

// loadSeq makes every load run's users and addresses distinct.
var loadSeq atomic.Int64

// loadCommands runs n /invite-guest commands at once, each from its own
// user, and measures for each the time from sending the command to Slack
// receiving views.open with its trigger_id (which expires after 3 s), and
// to the command's ack.
func (e *emulated) loadCommands(ctx context.Context, n int) (open, ack latencies, err error) {
	run := loadSeq.Add(1)
	type result struct {
		trigger string
		sent    time.Time
		ack     time.Duration
		err     error
	}
	res := make([]result, n)
	var wg sync.WaitGroup
	for i := range res {
		res[i].trigger = e.slack.NewTriggerID()
		wg.Go(func() {
			r := &res[i]
			r.sent = time.Now()
			resp, err := e.player.CommandWithTrigger(ctx, fmt.Sprintf("U0LOAD%d_%d", run, i), bot.Command, "", r.trigger)
			r.ack = time.Since(r.sent)
			if err == nil && resp.Status != http.StatusOK {
				err = fmt.Errorf("command answered %d: %s", resp.Status, resp.Body)
			}
			r.err = err
		})
	}
	wg.Wait()
	opened := map[string]time.Time{}
	for _, c := range e.slack.Calls("views.open") {
		if t, _ := c.JSON["trigger_id"].(string); c.Error == "" {
			opened[t] = c.At
		}
	}
	for _, r := range res {
		if r.err != nil {
			return nil, nil, r.err
		}
		at, ok := opened[r.trigger]
		if !ok {
			return nil, nil, fmt.Errorf("no dialog opened for trigger %s", r.trigger)
		}
		open = append(open, at.Sub(r.sent))
		ack = append(ack, r.ack)
	}
	return open, ack, nil
}

// loadSubmissions opens n dialogs, then submits them all at once, each for
// a different address, and measures each submission's ack as Slack sees
// it. The invitation work continues in the background.
func (e *emulated) loadSubmissions(ctx context.Context, n int) (ack latencies, err error) {
	run := loadSeq.Add(1)
	views := make([]string, n)
	for i := range views {
		if views[i], err = e.openDialog(ctx, fmt.Sprintf("U0LOAD%d_%d", run, i)); err != nil {
			return nil, err
		}
	}
	ack = make(latencies, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, view := range views {
		wg.Go(func() {
			v := inviteValues(fmt.Sprintf("guest%d.%d@fabrikam.com", run, i), "Load Guest", "slack_link")
			start := time.Now()
			resp, err := e.player.Submit(ctx, fmt.Sprintf("U0LOAD%d_%d", run, i), view, v)
			ack[i] = time.Since(start)
			if err == nil {
				if a, _ := resp.JSON()["response_action"].(string); resp.Status != http.StatusOK || a != "update" {
					err = fmt.Errorf("submission answered %d: %s", resp.Status, resp.Body)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return ack, nil
}

// openDialog runs /invite-guest as user and returns the dialog's view ID.
func (e *emulated) openDialog(ctx context.Context, user string) (string, error) {
	resp, view, err := e.player.Command(ctx, user, bot.Command, "")
	switch {
	case err != nil:
		return "", err
	case view == "":
		return "", fmt.Errorf("no dialog opened: %d %s", resp.Status, resp.Body)
	}
	return view, nil
}

func loadCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 100, "concurrent commands and submissions")
	rounds := fs.Int("rounds", 5, "rounds of each")
	graphLatency := fs.Duration("graph-latency", 5*time.Second, "how long Graph takes to answer during the submissions")
	socket := fs.Bool("socket", false, "play Slack over Socket Mode instead of HTTP")
	track := fs.Int("track", 0, "instead: measure acceptance tracking with this many pending invitations")
	inviters := fs.String("inviters", "", "instead: run the whole flow for these numbers of concurrent inviters, e.g. 10,100,1000")
	bulk := fs.Int("bulk", 0, "instead: share a bulk CSV file of this many rows in Slack and time it")
	db := fs.String("db", "", "with -inviters (one count): run on this empty store, e.g. a postgres:// URL, instead of a temporary bbolt file")
	calls := fs.Int("calls", 0, "instead: this many inviters at once each invite one new guest; count the Slack and Graph calls per guest")
	slackLimits := fs.Bool("slack-limits", true, "with -calls: the Slack emulator enforces Slack's published rate limits")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: invitebot load [-n 100] [-rounds 5] [-graph-latency 5s] [-socket]
       invitebot load -track 10000 [-rounds 5]
       invitebot load -inviters 10,100,1000 [-graph-latency 100ms]
       invitebot load -inviters 100 -db postgres://…/empty_database
       invitebot load -bulk 2000 [-graph-latency 100ms]
       invitebot load -calls 50 [-graph-latency 50ms] [-slack-limits=false]

Measures invitebot's Slack deadlines on this machine, against the built-in
emulators: the time from a slash command to views.open (Slack's trigger_id
expires after 3 s) with n commands at once, and the view_submission ack
(Slack waits 3 s) with n submissions at once while Graph takes
-graph-latency to answer.

With -track, it measures an acceptance-tracking cycle instead: the Graph
requests per cycle and the cycle time for that many pending invitations.

With -inviters, it runs the whole flow for each number of concurrent
inviters (command, dialog, submission, invitation, group, DM) with Graph's
invitation limit (150 per 5 s per tenant) enforced by the emulated tenant,
and reports the deadlines, invitations completed per second, the 429s the
tenant had to answer, and the peak RSS.

With -bulk, it shares a CSV file of that many rows in a DM with the bot,
with the same limit enforced, and reports how long the results file took,
rows per second, the progress updates and the 429s.

With -calls, that many inviters open the dialog, then each submits one new
guest at the same moment (no groups, no attributes, the redeem link in
Slack), with Slack's published rate limits (per method per minute: Tier 2
20, Tier 3 50, Tier 4 100; chat.postMessage one per second per channel)
enforced by the Slack emulator. It reports the Slack calls per guest by
method, the Graph calls per guest by endpoint, the Slack 429s, and the
time from the submissions to the last DM.
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *rounds < 1 || *track < 0 || *bulk < 0 || *calls < 0 {
		return fmt.Errorf("-n and -rounds must be at least 1, -track, -bulk and -calls at least 0")
	}
	if *calls > 0 {
		lat := *graphLatency
		if !graphLatencySet(fs) {
			lat = 50 * time.Millisecond
		}
		return callsLoadCmd(ctx, *calls, lat, *slackLimits, stdout)
	}
	if *db != "" && *inviters == "" {
		return errors.New("-db is for -inviters")
	}
	if *bulk > 0 {
		lat := *graphLatency
		if !graphLatencySet(fs) {
			lat = 100 * time.Millisecond
		}
		return bulkLoadCmd(ctx, *bulk, lat, stdout)
	}
	if *track > 0 {
		return trackLoadCmd(ctx, *track, *rounds, stdout)
	}
	if *inviters != "" {
		var counts []int
		for _, f := range strings.Split(*inviters, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("-inviters: %q is not a positive number", f)
			}
			counts = append(counts, n)
		}
		lat := *graphLatency
		if !graphLatencySet(fs) {
			lat = 100 * time.Millisecond
		}
		if *db != "" && len(counts) != 1 {
			return errors.New("-db: give -inviters one count (each run needs an empty store)")
		}
		return flowLoadCmd(ctx, counts, lat, *db, stdout)
	}
	dir, err := os.MkdirTemp("", "invitebot-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tr := overHTTP
	if *socket {
		tr = overSocket
	}
	e, err := startEmulated(filepath.Join(dir, "invitebot.db"), slog.New(slog.NewTextHandler(io.Discard, nil)), deps{}, tr)
	if err != nil {
		return err
	}
	defer e.Close()
	var open, cack, sack latencies
	for range *rounds {
		o, a, err := e.loadCommands(ctx, *n)
		if err != nil {
			return err
		}
		open, cack = append(open, o...), append(cack, a...)
	}
	e.tenant.SetLatency("", *graphLatency)
	defer e.tenant.SetLatency("", 0)
	for range *rounds {
		a, err := e.loadSubmissions(ctx, *n)
		if err != nil {
			return err
		}
		sack = append(sack, a...)
	}
	fmt.Fprintf(stdout, "%d rounds of %d concurrent requests over %s\n", *rounds, *n, map[transport]string{overHTTP: "HTTP", overSocket: "Socket Mode"}[tr])
	fmt.Fprintf(stdout, "slash command → views.open:     %s\n", open)
	fmt.Fprintf(stdout, "slash command ack:              %s\n", cack)
	fmt.Fprintf(stdout, "view_submission ack (Graph %s): %s\n", *graphLatency, sack)
	return nil
}

// graphLatencySet reports whether -graph-latency was given.
func graphLatencySet(fs *flag.FlagSet) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "graph-latency" })
	return set
}

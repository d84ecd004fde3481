//go:build !noemulators

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
)

// flowLoad is what loadFlows measured.
type flowLoad struct {
	Inviters  int
	Open, Ack latencies // slash command → views.open; submission ack
	Done      time.Duration
	Completed int     // invitations that reached notified
	PerSecond float64 // completed / Done
	Throttled int     // POST /invitations the tenant refused with 429
	PeakRSSKB int64
}

// loadFlows has n inviters at once each run /invite-guest, submit the
// dialog and wait for the outcome DM: the whole flow, with Graph's
// invitation limit enforced by the tenant.
func (e *emulated) loadFlows(ctx context.Context, n int) (flowLoad, error) {
	run := loadSeq.Add(1)
	r := flowLoad{Inviters: n, Open: make(latencies, n), Ack: make(latencies, n)}
	user := func(i int) string { return fmt.Sprintf("U0FLOW%d_%d", run, i) }
	errs := make([]error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			trigger := e.slack.NewTriggerID()
			sent := time.Now()
			if _, err := e.player.CommandWithTrigger(ctx, user(i), bot.Command, "", trigger); err != nil {
				errs[i] = err
				return
			}
			view := e.slack.OpenedView(trigger)
			if view == "" {
				errs[i] = fmt.Errorf("no dialog for %s", user(i))
				return
			}
			for _, c := range e.slack.Calls("views.open") {
				if t, _ := c.JSON["trigger_id"].(string); t == trigger {
					r.Open[i] = c.At.Sub(sent)
				}
			}
			v := inviteValues(fmt.Sprintf("flow%d.%d@fabrikam.com", run, i), "Load Guest", "slack_link", emuPortal)
			t0 := time.Now()
			resp, err := e.player.Submit(ctx, user(i), view, v)
			r.Ack[i] = time.Since(t0)
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
	// Every inviter's outcome DM.
	if err := e.slack.WaitFor(ctx, func() bool {
		for i := range n {
			if len(e.dmsTo(user(i))) == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		return r, fmt.Errorf("waiting for the outcome DMs: %w", err)
	}
	r.Done = time.Since(start)
	e.app.svc.Wait()
	invs, err := e.app.db.Invitations(ctx, flows.InvitationFilter{States: []flows.State{flows.StateNotified}})
	if err != nil {
		return r, err
	}
	for _, inv := range invs {
		if strings.HasPrefix(inv.Inviter.UserID, fmt.Sprintf("U0FLOW%d_", run)) {
			r.Completed++
		}
	}
	r.PerSecond = float64(r.Completed) / r.Done.Seconds()
	r.Throttled = e.tenant.InvitationsThrottled()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.PeakRSSKB = ru.Maxrss // kilobytes on Linux
	}
	return r, nil
}

// flowLoadCmd is `invitebot load -inviters 10,100,1000`.
// db, if not "", is the store to run on (one count only).
func flowLoadCmd(ctx context.Context, counts []int, graphLatency time.Duration, db string, stdout io.Writer) error {
	fmt.Fprintf(stdout, "whole flow (command, dialog, submission, Graph %s per call, limit 150 invitations / 5 s):\n", graphLatency)
	fmt.Fprintf(stdout, "%-9s %-34s %-34s %9s %7s %9s %9s\n", "inviters", "command→views.open p50/p99/max", "submission ack p50/p99/max", "completed", "inv/s", "429s", "peak RSS")
	for _, n := range counts {
		e, stop, err := startLoad(db)
		if err != nil {
			return err
		}
		e.tenant.SetInvitationLimit(150, 5*time.Second) // Graph's own limit
		e.tenant.SetLatency("", graphLatency)
		r, err := e.loadFlows(ctx, n)
		stop()
		if err != nil {
			return fmt.Errorf("%d inviters: %w", n, err)
		}
		ms := func(l latencies) string {
			f := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			return fmt.Sprintf("%.0f/%.0f/%.0f ms", f(l.percentile(50)), f(l.percentile(99)), f(l.percentile(100)))
		}
		fmt.Fprintf(stdout, "%-9d %-34s %-34s %9d %7.1f %9d %6d MB\n", n, ms(r.Open), ms(r.Ack), r.Completed, r.PerSecond, r.Throttled, r.PeakRSSKB/1024)
	}
	return nil
}

//go:build !noemulators

package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"

	"github.com/invitebot/invitebot/internal/slackfake"
)

// bulkLoadCmd is `invitebot load -bulk 2000`: a CSV of that many rows
// shared in Slack, against Graph's invitation limit (150 per 5 s per
// tenant) enforced by the emulated tenant, each Graph call taking
// graphLatency.
func bulkLoadCmd(ctx context.Context, rows int, graphLatency time.Duration, stdout io.Writer) error {
	e, stop, err := startLoad("")
	if err != nil {
		return err
	}
	defer stop()
	if rows > e.cfg.BulkMaxRows { // restart with a higher INVITEBOT_BULK_MAX_ROWS
		if err := e.stopApp(); err != nil {
			return err
		}
		e.cfg.BulkMaxRows = rows
		if err := e.startApp(); err != nil {
			return err
		}
	}
	e.tenant.SetInvitationLimit(150, 5*time.Second)
	e.tenant.SetLatency("", graphLatency)
	var b strings.Builder
	b.WriteString("email,display name,send microsoft email,groups\n")
	for i := range rows {
		fmt.Fprintf(&b, "guest%05d@fabrikam.com,Guest %d,true,Partner portal users\n", i, i)
	}
	const user = "U0BULK"
	start := time.Now()
	id := e.slack.ShareFile(user, slackfake.DMChannel(user), "load.csv", []byte(b.String()))
	if _, err := e.player.FileShared(ctx, user, slackfake.DMChannel(user), id); err != nil {
		return err
	}
	var results slackfake.File
	err = e.slack.WaitFor(ctx, func() bool {
		for _, f := range e.slack.Files() {
			if f.Name == "load.results.csv" {
				results = f
				return true
			}
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("no results file: %w", err)
	}
	took := time.Since(start)
	invited := strings.Count(string(results.Content), ",invited,")
	var ru syscall.Rusage
	var rss int64
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		rss = ru.Maxrss / 1024
	}
	fmt.Fprintf(stdout, "bulk file of %d rows shared in Slack (Graph %s per call, limit 150 invitations / 5 s):\n", rows, graphLatency)
	fmt.Fprintf(stdout, "invited %d in %s (%.1f rows/s), %d progress updates, 429s from Graph: %d, peak RSS %d MB\n",
		invited, took.Round(100*time.Millisecond), float64(invited)/took.Seconds(), len(e.slack.Calls("chat.update")), e.tenant.InvitationsThrottled(), rss)
	return nil
}

package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/internal/slackfake"
)

// A bulk run SIGKILLed several times, each time at a random POST
// /invitations (held before Graph, or performed with its answer lost), and
// the file shared again after each restart: in the end every row is
// invited, each address is one guest in the tenant with one invitation
// record, and the results file says so.
func TestCrashBulkResume(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r := newCrashRig(t)
	// The child reaches Slack through the proxy: so must its downloads.
	for _, kv := range r.env {
		if base, ok := strings.CutPrefix(kv, "SLACK_API_URL="); ok {
			r.slack.SetFileURLBase(base)
		}
	}
	rng := crashRNG(t)

	const rows = 24
	var b strings.Builder
	b.WriteString("email,display name,send microsoft email,groups\n")
	for i := range rows {
		fmt.Fprintf(&b, "row%02d@fabrikam.com,Row %d,%v,Partner portal users\n", i, i, i%2 == 0)
	}
	file := []byte(b.String())
	share := func() {
		t.Helper()
		id := r.slack.ShareFile(ann, slackfake.DMChannel(ann), "crash.csv", file)
		resp, err := r.player.FileShared(ctx, ann, slackfake.DMChannel(ann), id)
		if err != nil || resp.Status != http.StatusOK {
			t.Fatalf("file_shared: %v %+v", err, resp)
		}
	}

	r.start()
	r.healthy(ctx)
	for crash := range 3 {
		tr := &trap{key: "POST /invitations", n: 1 + rng.IntN(8), after: rng.IntN(2) == 0}
		r.hub.arm(tr)
		share()
		select {
		case <-tr.fired:
		case <-ctx.Done():
			t.Fatalf("crash %d: the run never reached %s #%d; log:\n%s", crash, tr, tr.n, tail(r.logs.String(), 3000))
		}
		r.kill()
		r.hub.disarm()
		t.Logf("crash %d at %s #%d", crash, tr, tr.n)
		r.start()
		r.healthy(ctx)
	}
	share()
	var results []byte
	err := poll(ctx, func() bool {
		for _, f := range r.slack.Files() {
			if f.Name == "crash.results.csv" && f.User == slackfake.BotUserID {
				results = f.Content
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("no results file: %v; log:\n%s", err, tail(r.logs.String(), 3000))
	}
	got, err := csv.NewReader(bytes.NewReader(results)).ReadAll()
	if err != nil || len(got) != rows+1 {
		t.Fatalf("results (%v):\n%s", err, results)
	}
	for _, row := range got[1:] {
		if row[3] != "invited" || row[2] == "" {
			t.Errorf("row %q", row)
		}
	}
	r.stop(ctx)
	recs, _ := r.records(ctx) // fails on two records for one address
	guests := map[string]int{}
	for _, u := range r.tenant.Users() {
		guests[u.Mail]++
	}
	emails, posts := map[string]int{}, map[string]int{} // Microsoft's emails, and POST /invitations, per address
	for _, inv := range r.tenant.Invitations() {
		addr, _ := inv.Body["invitedUserEmailAddress"].(string)
		posts[addr]++
		if inv.Body["sendInvitationMessage"] == true {
			emails[addr]++
		}
	}
	for i := range rows {
		email := fmt.Sprintf("row%02d@fabrikam.com", i)
		if guests[email] != 1 || recs[email] == nil || posts[email] == 0 {
			t.Errorf("%s: %d guests, %d invitations, record %v", email, guests[email], posts[email], recs[email] != nil)
		}
		// A lost answer may be followed by a second POST, but never by a
		// second email from Microsoft.
		want := 0
		if i%2 == 0 {
			want = 1
		}
		if emails[email] != want {
			t.Errorf("%s: Microsoft sent %d invitation emails, want %d", email, emails[email], want)
		}
	}
}

package main

// The fault matrix: the full invite flow under Microsoft Dev Proxy-style
// Graph chaos (random 429/5xx with Retry-After, a second 429 for clients
// that retry too early, latency, dropped connections, lost answers) and
// Slack chaos (ratelimited, 5xx, internal_error/fatal_error), checking the
// invariants that must hold whatever fails:
//
//   - at most one guest per email in the tenant, exactly one for every
//     invitation that succeeded, and Microsoft's email sent at most once;
//   - every record ends notified, accepted, or failed with a reason;
//   - the inviter gets exactly one outcome DM per invitation (none only when
//     the record itself says Slack could not be told: notify_failed);
//   - the redeem link appears only in the inviter's DM, never in another
//     channel, a dialog or the log;
//   - the audit log holds every event of every record's history.
//
// Each mode drives its invitations one at a time (so a seed reproduces a
// run) except "everything", which runs three inviters concurrently. Retry
// waits are the harness's fake sleeps; Graph's second-throttle check runs
// on a clock those sleeps advance, so a bot that honours Retry-After never
// trips it.

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/slackfake"
)

type chaosMode struct {
	name     string
	seed     int64
	graph    map[graphfake.Route]graphfake.Chaos
	slack    map[string]slackfake.Chaos
	parallel int // concurrent inviters; 1: one invitation at a time
	// honoursRetryAfter: with one invitation at a time, a second throttle
	// can only come from the bot retrying before Retry-After.
	honoursRetryAfter bool
}

var chaosModes = []chaosMode{
	{name: "None", seed: 1, parallel: 1},
	{name: "Graph429Storm", seed: 2, parallel: 1, honoursRetryAfter: true, graph: map[graphfake.Route]graphfake.Chaos{
		"": {Rate: 0.5, Statuses: []int{429}, RetryAfter: "0.35", SecondThrottle: true}}},
	{name: "Graph5xx", seed: 3, parallel: 1, graph: map[graphfake.Route]graphfake.Chaos{
		"": {Rate: 0.3, Statuses: []int{500, 502, 503, 504, 507}, RetryAfter: "0.2"}}},
	// The dangerous one: the guest is created but the answer is lost.
	{name: "GraphLostInvitations", seed: 4, parallel: 1, graph: map[graphfake.Route]graphfake.Chaos{
		graphfake.RoutePostInvitations: {Rate: 0.35, Statuses: []int{500, 502, 504}, Reset: 0.35, AfterEffect: 0.8}}},
	{name: "GraphLatency", seed: 5, parallel: 1, graph: map[graphfake.Route]graphfake.Chaos{
		"": {Jitter: 50 * time.Millisecond}}},
	{name: "SlackRateLimited", seed: 6, parallel: 1, slack: map[string]slackfake.Chaos{
		"": {RateLimited: 0.3, RetryAfter: "1"}}},
	{name: "Slack5xx", seed: 7, parallel: 1, slack: map[string]slackfake.Chaos{
		"": {ServerError: 0.2, Internal: 0.1}}},
	{name: "Everything", seed: 8, parallel: 3,
		graph: map[graphfake.Route]graphfake.Chaos{"": {Rate: 0.15, RetryAfter: "0.25", SecondThrottle: true,
			Jitter: 10 * time.Millisecond, Reset: 0.05, AfterEffect: 0.5}},
		slack: map[string]slackfake.Chaos{"": {RateLimited: 0.1, ServerError: 0.1, Internal: 0.05, Jitter: 5 * time.Millisecond}}},
}

// chaosInviters invite in turn; each has an Entra account, so the sponsor
// step runs under chaos too.
var chaosInviters = []string{ann, "U0BEN", "U0CAT"}

// chaosPlan is one invitation of a mode.
type chaosPlan struct {
	i         int
	inviter   string
	email     string
	delivery  string
	groups    []string
	attrs     bool
	existing  string // object ID of the existing guest to pick; "": none
	redeem    bool   // the guest redeems, and a tracking cycle notices
	viewID    string // the dialog it was submitted from
	submitted bool
}

const chaosInvitations = 16

func TestChaos(t *testing.T) {
	for _, m := range chaosModes {
		t.Run(m.name, func(t *testing.T) {
			// The modes start one after another, each until its start-up
			// Graph read is done, then run in parallel: building a Graph
			// client writes a global of kiota-http-go (EnableBackingStore)
			// that msgraph-sdk-go's models read while decoding answers.
			h := startWith(t, overHTTP, deps{pollInterval: -1, storeNoSync: true})
			// Play the workspace the bot finds itself installed in.
			who, err := slack.New("xoxb-emulated", slack.OptionAPIURL(h.slack.APIURL())).AuthTestContext(h.ctx)
			if err != nil {
				t.Fatal(err)
			}
			h.player.Team = who.TeamID
			for h.app.svc.Domains() == nil {
				if h.ctx.Err() != nil {
					t.Fatal("the verified domains were never read")
				}
				time.Sleep(time.Millisecond)
			}
			t.Parallel()
			runChaosMode(t, h, m)
		})
	}
}

func runChaosMode(t *testing.T, h *harness, m chaosMode) {
	began := time.Now()
	t.Logf("mode %s: seed %d, %d invitations, %d at a time", m.name, m.seed, chaosInvitations, m.parallel)
	for i, u := range chaosInviters {
		email := fmt.Sprintf("inviter%d@contoso.com", i)
		h.slack.AddUser(u, email, "Inviter "+u)
		h.tenant.AddUser(graphfake.User{DisplayName: "Inviter " + u, Mail: email, UserPrincipalName: email, UserType: "Member", AccountEnabled: true})
	}
	plans := make([]*chaosPlan, chaosInvitations)
	for i := range plans {
		p := &chaosPlan{i: i, inviter: chaosInviters[i%len(chaosInviters)], email: fmt.Sprintf("guest%02d@partner%d.example", i, i%3),
			delivery: []string{"slack_link", "microsoft_email"}[i%2], attrs: i%4 == 1, redeem: i%3 == 1}
		if i%3 == 0 {
			p.groups = []string{emuPortal}
		}
		if i%5 == 4 {
			p.existing = h.tenant.AddUser(graphfake.User{DisplayName: "Existing " + p.email, Mail: p.email, UserType: "Guest",
				ExternalUserState: "Accepted", AccountEnabled: true}).ID
		}
		plans[i] = p
	}
	// (The start-up read of the verified domains is not part of the matrix.)
	// Graph's clock for second throttles: real time plus every retry wait
	// the bot (fakely) slept.
	clock := func() time.Time {
		var slept time.Duration
		for _, d := range h.sleeps.all() {
			slept += d
		}
		return time.Now().Add(slept)
	}
	n := int64(0)
	for route, c := range m.graph {
		c.Seed, c.Clock = m.seed*100+n, clock
		n++
		h.tenant.SetChaos(route, c)
	}
	for method, c := range m.slack {
		c.Seed = m.seed*100 + n
		n++
		h.slack.SetChaos(method, c)
	}

	// Drive the invitations.
	work := make(chan *chaosPlan)
	var wg sync.WaitGroup
	for range m.parallel {
		wg.Go(func() {
			for p := range work {
				driveChaosInvitation(t, h, p, m.parallel == 1)
			}
		})
	}
	for _, p := range plans {
		work <- p
	}
	close(work)
	wg.Wait()
	h.app.svc.Wait()

	// Some guests redeem; tracking cycles (under the same chaos, through
	// JSON batches) notice.
	for _, p := range plans {
		if inv := chaosRecord(t, h, p); p.redeem && inv != nil && inv.State == flows.StateNotified && !inv.Picked {
			h.tenant.Redeem(inv.ObjectID)
		}
	}
	for range 3 {
		if _, err := h.app.svc.Track(h.ctx); err != nil {
			t.Logf("tracking cycle: %v", err)
		}
		h.app.svc.Wait()
	}

	checkChaosInvariants(t, h, m, plans)
	gs, ss := h.tenant.ChaosStats(), h.slack.ChaosStats()
	states := map[flows.State]int{}
	for _, p := range plans {
		if inv := chaosRecord(t, h, p); inv != nil {
			key := inv.State
			if inv.Failure != nil {
				key += flows.State(":" + inv.Failure.Code)
			}
			states[key]++
		}
	}
	t.Logf("mode %s (seed %d) took %v: records %v; Graph chaos: %d requests, failed %v, %d second throttles, %d resets, %d after-effects; Slack chaos: %d calls, failed %v",
		m.name, m.seed, time.Since(began).Round(time.Millisecond), states, gs.Requests, gs.Failed, gs.SecondThrottles, gs.Resets, gs.AfterEffects, ss.Calls, ss.Failed)
}

// driveChaosInvitation plays the inviter: run /invite-guest (again, as a
// person would, if Slack failed to open the dialog), submit, and pick the
// existing account when the pick dialog shows. alone: no other invitation
// runs, so waiting for the service waits for this one.
func driveChaosInvitation(t *testing.T, h *harness, p *chaosPlan, alone bool) {
	for try := 0; try < 20 && p.viewID == ""; try++ {
		r, view, err := h.player.Command(h.ctx, p.inviter, bot.Command, "")
		if err != nil || r.Status != http.StatusOK {
			t.Errorf("invitation %d: command: %v %d %s", p.i, err, r.Status, r.Body)
			return
		}
		p.viewID = view
	}
	if p.viewID == "" {
		t.Errorf("invitation %d: Slack never opened the dialog in 20 tries", p.i)
		return
	}
	v := inviteValues(p.email, fmt.Sprintf("Guest %02d", p.i), p.delivery, p.groups...)
	if p.attrs {
		v["job_title"] = map[string]any{"job_title": slackfake.Text("Architect")}
		v["company_name"] = map[string]any{"company_name": slackfake.Text("Partner")}
	}
	r, err := h.player.Submit(h.ctx, p.inviter, p.viewID, v)
	if err != nil || r.Status != http.StatusOK || r.JSON()["response_action"] != "update" {
		t.Errorf("invitation %d: submit: %v %d %s", p.i, err, r.Status, r.Body)
		return
	}
	p.submitted = true
	if p.existing == "" {
		if alone {
			h.app.svc.Wait()
		}
		return
	}
	// The flow finds the existing account and asks the inviter to pick.
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	_ = h.slack.WaitFor(ctx, func() bool {
		if h.viewCallback(p.viewID) == bot.CallbackPick {
			return true
		}
		inv := chaosRecord(t, h, p)
		if inv == nil || inv.State == flows.StateAwaitingPick {
			// The dialog follows the record: invitebot retries it until
			// Slack shows it, or ends the invitation.
			return false
		}
		return inv.State.Terminal() && !h.running(inv.ID)
	})
	if alone {
		h.app.svc.Wait()
	}
	if h.viewCallback(p.viewID) != bot.CallbackPick {
		return // the invariants report what became of it
	}
	r, err = h.player.Submit(h.ctx, p.inviter, p.viewID, map[string]map[string]any{"pick": {"pick": slackfake.Radio(p.existing)}})
	if err != nil || r.Status != http.StatusOK {
		t.Errorf("invitation %d: pick: %v %d %s", p.i, err, r.Status, r.Body)
	}
	if alone {
		h.app.svc.Wait()
	}
}

// running approximates "the flow still works on it": the record is in a
// state the bot moves on from by itself.
func (h *harness) running(id string) bool {
	inv, err := h.app.db.Invitation(h.ctx, id)
	return err == nil && !inv.State.Terminal() && !inv.State.Waiting()
}

// chaosRecord returns the record submitted from p's dialog, or nil.
func chaosRecord(t *testing.T, h *harness, p *chaosPlan) *flows.Invitation {
	t.Helper()
	if p.viewID == "" {
		return nil
	}
	invs, err := h.app.db.Invitations(h.ctx, flows.InvitationFilter{OriginKind: flows.OriginDialog, OriginKey: p.viewID})
	if err != nil {
		t.Fatal(err)
	}
	if len(invs) > 1 {
		t.Errorf("invitation %d: %d records for one dialog", p.i, len(invs))
	}
	if len(invs) == 0 {
		return nil
	}
	return invs[0]
}

var ticketParamRE = regexp.MustCompile(`ticket(?:%3D|%253D|=)([0-9a-f]+)`)

func checkChaosInvariants(t *testing.T, h *harness, m chaosMode, plans []*chaosPlan) {
	t.Helper()
	fail := func(p *chaosPlan, inv *flows.Invitation, format string, args ...any) {
		t.Helper()
		state := "no record"
		if inv != nil {
			state = fmt.Sprintf("record %s state %s failure %+v", inv.ID, inv.State, inv.Failure)
		}
		t.Errorf("mode %s seed %d, invitation %d (%s, %s, by %s; %s): %s", m.name, m.seed, p.i, p.email, p.delivery, p.inviter, state,
			fmt.Sprintf(format, args...))
	}
	users := h.tenant.Users()
	invitations := h.tenant.Invitations()
	msgs := h.slack.Messages()
	audit, err := h.app.db.AuditLog(h.ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var views strings.Builder
	for _, method := range []string{"views.open", "views.update", "views.push", "views.publish"} {
		for _, c := range h.slack.Calls(method) {
			fmt.Fprintf(&views, "%v\n", c.JSON)
		}
	}
	logs := h.logs.String()
	var tickets []string
	for _, p := range plans {
		if !p.submitted {
			fail(p, nil, "never submitted")
			continue
		}
		inv := chaosRecord(t, h, p)
		if inv == nil {
			fail(p, nil, "the submission left no record")
			continue
		}
		// Final state, never stuck.
		switch {
		case inv.State == flows.StateNotified, inv.State == flows.StateAccepted:
		case inv.State == flows.StateFailed && inv.Failure != nil && inv.Failure.Code != "":
		case inv.State == flows.StateAwaitingPick:
			fail(p, inv, "stuck in awaiting_pick: the pick dialog never reached the inviter (its views.update answers: %v), "+
				"so nobody can pick and nothing retries it (bot/notify.go updateView retries only not_found; flows/steps.go check tells NoticeMatches best-effort)",
				pickUpdates(h, inv.ID))
		default:
			fail(p, inv, "not in a final state")
		}
		// One guest per email; exactly one if it succeeded.
		guests := 0
		for _, u := range users {
			if strings.EqualFold(u.Mail, p.email) {
				guests++
				if inv.ObjectID != "" && u.ID != inv.ObjectID {
					fail(p, inv, "the guest is %s, the record says %s", u.ID, inv.ObjectID)
				}
			}
		}
		if ok := inv.State == flows.StateNotified || inv.State == flows.StateAccepted; guests > 1 || (ok && guests != 1) {
			fail(p, inv, "%d guests with this email", guests)
		}
		if p.existing != "" && inv.ObjectID != "" && inv.ObjectID != p.existing {
			fail(p, inv, "a new guest %s instead of the existing %s", inv.ObjectID, p.existing)
		}
		emails := 0
		for _, x := range invitations {
			if strings.EqualFold(fmt.Sprint(x.Body["invitedUserEmailAddress"]), p.email) && x.Body["sendInvitationMessage"] == true {
				emails++
			}
		}
		if emails > 1 {
			fail(p, inv, "Microsoft emailed the guest %d times", emails)
		}
		// The inviter is told exactly once.
		outcome, accepted := 0, 0
		for _, msg := range msgs {
			if msg.Channel != slackfake.DMChannel(p.inviter) || msg.Ephemeral || !strings.Contains(string(msg.Blocks), "Invitation `"+inv.ID+"`") {
				continue
			}
			switch {
			case strings.HasPrefix(msg.Text, "Invited ") || strings.HasPrefix(msg.Text, "Could not invite "):
				outcome++
			case strings.HasPrefix(msg.Text, ":tada:"):
				accepted++
			}
		}
		notTold := inv.Failure != nil && inv.Failure.Code == flows.FailNotify
		if (notTold && outcome != 0) || (!notTold && outcome != 1 && inv.State.Terminal()) {
			fail(p, inv, "%d outcome DMs to the inviter, want exactly 1 (0 only for notify_failed)", outcome)
		}
		if inv.State == flows.StateAccepted && len(inv.Outbox) == 0 && accepted != 1 || accepted > 1 {
			fail(p, inv, "%d acceptance DMs (outbox %d), want 1", accepted, len(inv.Outbox))
		}
		// The audit log holds the record's history, event for event.
		var got, want []string
		for _, ev := range audit {
			if ev.InvitationID == inv.ID {
				got = append(got, fmt.Sprintf("%s %s %s %q", ev.At.Format(time.RFC3339Nano), ev.Actor, ev.Action, ev.Detail))
			}
		}
		for _, ev := range inv.History {
			want = append(want, fmt.Sprintf("%s %s %s %q", ev.At.Format(time.RFC3339Nano), ev.Actor, ev.Action, ev.Detail))
		}
		if len(want) < 2 || !slices.Equal(got, want) {
			fail(p, inv, "audit log events\n%s\nwant the record's history\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if inv.RedeemURL != "" {
			if mt := ticketParamRE.FindStringSubmatch(inv.RedeemURL); mt != nil {
				tickets = append(tickets, mt[1])
				for _, msg := range msgs {
					if strings.Contains(msg.Text+string(msg.Blocks), mt[1]) && (msg.Channel != slackfake.DMChannel(p.inviter) || msg.Ephemeral) {
						fail(p, inv, "its redeem link was posted to %s (ephemeral %v)", msg.Channel, msg.Ephemeral)
					}
				}
			}
		}
	}
	// No redeem link outside the inviters' DMs, in a dialog, or in the log.
	for _, msg := range msgs {
		all := msg.Text + string(msg.Blocks)
		if strings.Contains(all, "/redeem") && (!strings.HasPrefix(msg.Channel, "D") || msg.Ephemeral) {
			t.Errorf("mode %s seed %d: a redeem link was posted to %s", m.name, m.seed, msg.Channel)
		}
	}
	for _, tk := range tickets {
		if strings.Contains(views.String(), tk) {
			t.Errorf("mode %s seed %d: a redeem link is in a dialog", m.name, m.seed)
		}
		if strings.Contains(logs, tk) {
			t.Errorf("mode %s seed %d: a redeem link is in the log", m.name, m.seed)
		}
	}
	if strings.Contains(logs, "/redeem") || strings.Contains(views.String(), "/redeem") {
		t.Errorf("mode %s seed %d: a redeem link is in the log or a dialog", m.name, m.seed)
	}
	if st := h.tenant.ChaosStats(); m.honoursRetryAfter && st.SecondThrottles > 0 {
		t.Errorf("mode %s seed %d: the bot sent %v before Graph's Retry-After for it had elapsed (one invitation at a time: "+
			"a retry, or the next invitation right after one gave up on a 429)", m.name, m.seed, st.SecondThrottled)
	}
}

// pickUpdates returns the answers to the views.update calls that carried
// the invitation's pick dialog.
func pickUpdates(h *harness, id string) []string {
	var out []string
	for _, c := range h.slack.Calls("views.update") {
		v, _ := c.JSON["view"].(map[string]any)
		if v["callback_id"] == bot.CallbackPick && strings.Contains(fmt.Sprint(v["private_metadata"]), id) {
			out = append(out, cmp.Or(c.Error, "ok"))
		}
	}
	return out
}

package main

// End-to-end tests of acceptance tracking and the guest lifecycle (issue 3):
// the tracker against the Graph tenant emulator (JSON batches through the
// real msgraph-sdk-go), notices and Home tabs in the Slack fake, and the
// buttons, overflow menus, confirmation dialog and /invite-guest convert
// driven as Slack drives them, over HTTP and Socket Mode.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/slackfake"
	"github.com/invitebot/invitebot/internal/store"
)

const mallory = "U0MALLORY" // a workspace member who is neither the inviter nor an admin

// inviteGuest runs /invite-guest as Ann for email and waits for the outcome
// DM; it returns the notified (pending) invitation.
func (h *harness) inviteGuest(t *testing.T, email, name string, groups ...string) *flows.Invitation {
	t.Helper()
	n := len(h.dmsTo(ann))
	view := h.open(t, "")
	h.submit(t, view, inviteValues(email, name, "slack_link", groups...))
	h.waitDM(t, n+1)
	invs, err := h.app.db.Invitations(h.ctx, flows.InvitationFilter{Emails: []string{email}})
	if err != nil || len(invs) == 0 {
		t.Fatalf("no record for %s: %v", email, err)
	}
	inv := invs[len(invs)-1]
	if !inv.Pending() || inv.DM.TS == "" {
		t.Fatalf("invitation for %s is %s (tracking %+v, DM %+v), want pending with its DM recorded", email, inv.State, inv.Tracking, inv.DM)
	}
	return inv
}

// recordOf returns the stored invitation id.
func (h *harness) recordOf(t *testing.T, id string) *flows.Invitation {
	t.Helper()
	inv, err := h.app.db.Invitation(h.ctx, id)
	if err != nil {
		t.Fatalf("invitation %s: %v", id, err)
	}
	return inv
}

// trackCycle runs one tracking cycle, which must succeed, and waits for
// the background work it started (lifecycle actions it resumed).
func (h *harness) trackCycle(t *testing.T) flows.TrackStats {
	t.Helper()
	st, err := h.app.svc.Track(h.ctx)
	if err != nil {
		t.Fatalf("Track: %v (log: %s)", err, h.logs.String())
	}
	h.app.svc.Wait()
	return st
}

// latestVersion returns the message as it is now (after chat.update).
func (h *harness) latestVersion(m slackfake.Message) slackfake.Message {
	if cur, ok := h.slack.Message(m.Channel, m.TS); ok {
		return cur
	}
	return m
}

func msgText(m slackfake.Message) string { return m.Text + "\n" + string(m.Blocks) }

// dmsWith counts the DMs (to anyone) whose text or blocks contain s.
func (h *harness) dmsWith(s string) int {
	n := 0
	for _, m := range h.slack.Messages() {
		if !m.Ephemeral && strings.HasPrefix(m.Channel, "D") && strings.Contains(msgText(m), s) {
			n++
		}
	}
	return n
}

// ephemeralsTo returns the ephemeral messages shown to user, in order.
func (h *harness) ephemeralsTo(user string) []string {
	var out []string
	for _, m := range h.slack.Messages() {
		if m.Ephemeral && m.User == user {
			out = append(out, m.Text)
		}
	}
	return out
}

func countContaining(texts []string, s string) int {
	n := 0
	for _, x := range texts {
		if strings.Contains(x, s) {
			n++
		}
	}
	return n
}

var redeemLinkRE = regexp.MustCompile(`https://login\.microsoftonline\.com/redeem\?rd=[A-Za-z0-9%._~-]+`)

// redeemLinks returns the distinct redeem links in s.
func redeemLinks(s string) []string {
	var out []string
	for _, l := range redeemLinkRE.FindAllString(s, -1) {
		if !contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// graphWrites returns the requests after the first n that could change
// the tenant (anything but GET and the read-only JSON batches).
func (h *harness) graphWrites(n int) []graphfake.Request {
	var out []graphfake.Request
	for _, r := range h.tenant.Requests()[n:] {
		if r.Method != http.MethodGet && !strings.HasSuffix(r.Path, "/$batch") {
			out = append(out, r)
		}
	}
	return out
}

// publishes counts the views.publish calls for user's Home tab.
func (h *harness) publishes(user string) int {
	n := 0
	for _, c := range h.slack.Calls("views.publish") {
		u, _ := c.JSON["user_id"].(string)
		if u == "" {
			u = c.Form.Get("user_id")
		}
		if u == user && c.Error == "" {
			n++
		}
	}
	return n
}

// openHome has user open invitebot's Home tab and waits for invitebot to
// publish it; it returns the tab's text.
func (h *harness) openHome(t *testing.T, user string) string {
	t.Helper()
	before := h.publishes(user)
	r, err := h.player.OpenHome(h.ctx, user)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("app_home_opened: %v %d %s", err, r.Status, r.Body)
	}
	if err := h.slack.WaitFor(h.ctx, func() bool { return h.publishes(user) > before }); err != nil {
		t.Fatalf("Home tab of %s not published: %v (log: %s)", user, err, h.logs.String())
	}
	return h.homeText(user)
}

// homeBlocks returns the blocks of user's Home tab.
func (h *harness) homeBlocks(t *testing.T, user string) []map[string]any {
	t.Helper()
	raw, ok := h.slack.HomeView(user)
	if !ok {
		t.Fatalf("no Home tab published for %s", user)
	}
	var v struct {
		Blocks []map[string]any `json:"blocks"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v.Blocks
}

func (h *harness) homeText(user string) string {
	raw, _ := h.slack.HomeView(user)
	return renderView(raw)
}

// homeOptions returns the overflow option values on user's Home tab.
func (h *harness) homeOptions(t *testing.T, user string) []string {
	t.Helper()
	var out []string
	for _, b := range h.homeBlocks(t, user) {
		acc, _ := b["accessory"].(map[string]any)
		opts, _ := acc["options"].([]any)
		for _, o := range opts {
			v, _ := o.(map[string]any)["value"].(string)
			out = append(out, v)
		}
	}
	return out
}

// homeRowBlock returns the block ID of the Home tab row whose overflow
// offers value ("" when Slack would generate it: the fake then finds the
// row by the option's value).
func (h *harness) homeRowBlock(t *testing.T, user, value string) string {
	t.Helper()
	for _, b := range h.homeBlocks(t, user) {
		acc, _ := b["accessory"].(map[string]any)
		opts, _ := acc["options"].([]any)
		for _, o := range opts {
			if v, _ := o.(map[string]any)["value"].(string); v == value {
				id, _ := b["block_id"].(string)
				return id
			}
		}
	}
	t.Fatalf("no Home tab row of %s offers %q; options %v", user, value, h.homeOptions(t, user))
	return ""
}

// pressHome has user choose value in a Home tab overflow menu; it returns
// the ID of the view invitebot opened, if any.
func (h *harness) pressHome(t *testing.T, user, value string) string {
	t.Helper()
	r, view, err := h.player.PressOpen(h.ctx, user, slackfake.HomeContainer(user), bot.ActionOverflow, value, h.homeRowBlock(t, user, value))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("press %s on %s's Home tab: %v %d %s", value, user, err, r.Status, r.Body)
	}
	return view
}

// hasButton reports whether a DM carries the button actionID.
func hasButton(m slackfake.Message, actionID string) bool {
	var blocks []struct {
		Elements []struct {
			ActionID string `json:"action_id"`
		} `json:"elements"`
	}
	_ = json.Unmarshal(m.Blocks, &blocks)
	for _, b := range blocks {
		for _, e := range b.Elements {
			if e.ActionID == actionID {
				return true
			}
		}
	}
	return false
}

// clickDM has user press the button actionID (value: the invitation ID)
// on a DM. If the DM lacks the button, the press is sent as Slack would
// send it had the button been there (the caller reports the missing
// button), so the action's own behaviour is still tested.
func (h *harness) clickDM(user string, m slackfake.Message, actionID, value string) (slackfake.Response, error) {
	if hasButton(m, actionID) {
		return h.player.Press(h.ctx, user, slackfake.MessageContainer(m), actionID, value, "")
	}
	return h.player.Action(h.ctx, user, slackfake.MessageContainer(m),
		map[string]any{"type": "button", "action_id": actionID, "block_id": bot.BlockInvitationActions, "value": value})
}

// pressDM has user press a button on a DM; the DM must have it.
func (h *harness) pressDM(t *testing.T, user string, m slackfake.Message, actionID, value string) {
	t.Helper()
	if !hasButton(m, actionID) {
		t.Errorf("the DM %q has no %q button", m.Text, actionID)
	}
	r, err := h.clickDM(user, m, actionID, value)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("press %s: %v %d %s", actionID, err, r.Status, r.Body)
	}
}

// 1. The inviter hears once that the guest accepted; the original DM loses
// its link.
func TestE2EAcceptanceNotifiesInviter(t *testing.T) { bothTransports(t, testAcceptanceNotifiesInviter) }

func testAcceptanceNotifiesInviter(t *testing.T, h *harness) {
	inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith", emuPortal)
	uid := inv.ObjectID
	if inv.DM.Channel != slackfake.DMChannel(ann) {
		t.Errorf("DM ref = %+v, want Ann's DM channel", inv.DM)
	}
	if orig, ok := h.slack.Message(inv.DM.Channel, inv.DM.TS); !ok || len(redeemLinks(msgText(orig))) == 0 {
		t.Fatalf("original DM %+v has no redeem link: %v", inv.DM, ok)
	}

	if st := h.trackCycle(t); st.Pending != 1 || st.Requests != 1 || st.Accepted != 0 {
		t.Errorf("cycle while pending = %+v, want 1 pending, 1 request, 0 accepted", st)
	}
	if n := len(h.dmsTo(ann)); n != 1 {
		t.Errorf("%d DMs while pending, want 1", n)
	}
	if got := h.recordOf(t, inv.ID); got.State != flows.StateNotified || got.Tracking.External != flows.ExternalPending {
		t.Errorf("record while pending = %s %+v", got.State, got.Tracking)
	}

	h.tenant.Redeem(uid)
	if st := h.trackCycle(t); st.Accepted != 1 {
		t.Errorf("cycle after redemption = %+v, want 1 accepted", st)
	}
	dm := h.waitDM(t, 2)
	if !strings.Contains(dm, "accepted your invitation") || !strings.Contains(dm, "Bob Smith") || !strings.Contains(dm, "after you sent it") {
		t.Errorf("accepted DM:\n%s", dm)
	}
	edited, ok := h.slack.Message(inv.DM.Channel, inv.DM.TS)
	if !ok || edited.Edited == 0 {
		t.Errorf("original DM not updated (found %v, edited %d)", ok, edited.Edited)
	}
	if all := msgText(edited); strings.Contains(all, "redeem") || !strings.Contains(all, "Accepted") || strings.Contains(all, `"action_id":"resend"`) {
		t.Errorf("original DM after acceptance still offers the link or Resend, or does not say accepted:\n%s", all)
	}
	got := h.recordOf(t, inv.ID)
	if got.State != flows.StateAccepted || got.Tracking.External != flows.ExternalAccepted || got.Tracking.AcceptedAt.IsZero() || len(got.Outbox) != 0 {
		t.Errorf("record = %s %+v outbox %v, want accepted with the notice delivered", got.State, got.Tracking, got.Outbox)
	}
	if g, err := h.app.db.Guest(h.ctx, uid); err != nil || g.State != flows.StateAccepted {
		t.Errorf("guest = %+v, %v; want accepted", g, err)
	}

	before := len(h.tenant.Requests())
	if st := h.trackCycle(t); st.Pending != 0 || st.Requests != 0 || st.Accepted != 0 {
		t.Errorf("cycle after acceptance = %+v, want nothing to do", st)
	}
	if n := len(h.tenant.Requests()) - before; n != 0 {
		t.Errorf("%d Graph requests for an accepted invitation", n)
	}
	if n := h.dmsWith("accepted your invitation"); n != 1 {
		t.Errorf("%d accepted DMs, want 1", n)
	}
}

// 2. With a poll interval, the tracker runs on its own.
func TestE2EBackgroundTrackerDetectsAcceptance(t *testing.T) {
	h := startWith(t, overHTTP, deps{pollInterval: 50 * time.Millisecond})
	inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith")
	h.tenant.Redeem(inv.ObjectID)
	if err := h.slack.WaitFor(h.ctx, func() bool { return h.dmsWith("accepted your invitation") > 0 }); err != nil {
		t.Fatalf("the background tracker did not report the acceptance: %v", err)
	}
	h.trackCycle(t) // one more cycle: nothing new
	if n := h.dmsWith("accepted your invitation"); n != 1 {
		t.Errorf("%d accepted DMs, want 1", n)
	}
	if got := h.recordOf(t, inv.ID); got.State != flows.StateAccepted {
		t.Errorf("record = %s", got.State)
	}
}

// seedPendingOffline stops invitebot, writes n pending invitations (with
// their guests in the tenant, PendingAcceptance) straight into its store
// without fsync, and starts invitebot again: the state n invitations
// through the dialog would leave, without their Slack traffic. Inviters
// rotate over 50 users.
func (h *harness) seedPendingOffline(t *testing.T, n int) []*flows.Invitation {
	t.Helper()
	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(h.cfg.DBPath, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	out := make([]*flows.Invitation, 0, n)
	for i := range n {
		email := fmt.Sprintf("pending%05d@fabrikam.com", i)
		u := h.tenant.AddUser(graphfake.User{DisplayName: fmt.Sprintf("Guest %d", i), Mail: email, UserType: "Guest",
			ExternalUserState: flows.ExternalPending, ExternalUserStateChangeDateTime: now, CreationType: "Invitation", AccountEnabled: true})
		inv := &flows.Invitation{
			ID: fmt.Sprintf("inv_e2e_%05d", i), Inviter: flows.Inviter{TeamID: emuTeam, UserID: fmt.Sprintf("U0INV%02d", i%50)},
			Request: flows.Request{Email: email, DisplayName: fmt.Sprintf("Guest %d", i), RedirectURL: "https://myapplications.microsoft.com",
				Delivery: flows.DeliverySlackLink, UserType: flows.UserTypeGuest},
			State: flows.StateNotified, ObjectID: u.ID, InvitedAt: now.Add(-time.Hour),
			Tracking:  flows.Tracking{External: flows.ExternalPending},
			CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Hour),
		}
		got, err := db.CreateInvitation(h.ctx, inv)
		if err != nil {
			_ = db.Close()
			t.Fatalf("seed %d: %v", i, err)
		}
		out = append(out, got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.startApp(); err != nil {
		t.Fatal(err)
	}
	return out
}

// trackingRequests returns the requests after the first n, leaving out the
// start-up read of the verified domains (a restart makes one in the
// background, at a time of its own).
func (h *harness) trackingRequests(n int) []graphfake.Request {
	var out []graphfake.Request
	for _, r := range h.tenant.Requests()[n:] {
		if r.Path != "/v1.0/organization" {
			out = append(out, r)
		}
	}
	return out
}

// 3. A cycle reads 45 pending guests in ⌈45/20⌉ = 3 JSON batches.
func TestE2ETrackingUsesBatches(t *testing.T) {
	h := start(t)
	const n = 45
	seeded := h.seedPendingOffline(t, n)
	reqs, items := len(h.tenant.Requests()), len(h.tenant.BatchItems())
	st := h.trackCycle(t)
	if st.Pending != n || st.Requests != 3 {
		t.Errorf("cycle = %+v, want %d pending in 3 requests", st, n)
	}
	got := h.trackingRequests(reqs)
	if len(got) != 3 {
		t.Fatalf("%d Graph requests, want 3: %+v", len(got), got)
	}
	sum := 0
	for _, r := range got {
		if r.Method != http.MethodPost || r.Path != "/v1.0/$batch" || r.Status != http.StatusOK || r.Items > flows.MaxStatesPerRequest {
			t.Errorf("request %s %s %d with %d items, want POST /v1.0/$batch 200 with ≤ 20 items", r.Method, r.Path, r.Status, r.Items)
		}
		sum += r.Items
	}
	bi := h.tenant.BatchItems()[items:]
	if sum != n || len(bi) != n {
		t.Errorf("batches carried %d items, tenant ran %d; want %d", sum, len(bi), n)
	}
	want := map[string]bool{}
	for _, inv := range seeded {
		want["/v1.0/users/"+inv.ObjectID] = true
	}
	for _, r := range bi {
		if r.Method != http.MethodGet || !want[r.Path] || !strings.Contains(r.RawQuery, "externalUserState") {
			t.Errorf("batch item %s %s?%s", r.Method, r.Path, r.RawQuery)
		}
		delete(want, r.Path)
	}
	if len(want) != 0 {
		t.Errorf("%d pending guests not read", len(want))
	}
	if n := len(h.slack.Calls("chat.postMessage")); n != 0 {
		t.Errorf("%d messages for a cycle in which nothing changed", n)
	}
}

// 4. 10 000 pending invitations: ⌈N/20⌉ requests, and exactly the three
// that were accepted are reported.
func TestE2ETracking10000Pending(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 10 000 invitations")
	}
	const n = 10000
	h := start(t)
	began := time.Now()
	seeded := h.seedPendingOffline(t, n)
	t.Logf("seeded %d pending invitations in %s", n, time.Since(began).Round(time.Millisecond))
	// The harness's minute is for the flow; seeding on a busy machine may
	// take most of it, and the cycle needs its own.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	h.ctx = ctx
	redeemed := []*flows.Invitation{seeded[0], seeded[n/2], seeded[n-1]}
	for _, inv := range redeemed {
		h.tenant.Redeem(inv.ObjectID)
	}
	reqs, items := len(h.tenant.Requests()), len(h.tenant.BatchItems())
	st := h.trackCycle(t)
	t.Logf("cycle 1: %+v", st)
	wantReqs := (n + flows.MaxStatesPerRequest - 1) / flows.MaxStatesPerRequest
	if got := h.trackingRequests(reqs); len(got) != wantReqs {
		t.Errorf("%d Graph requests, want %d", len(got), wantReqs)
	} else {
		for _, r := range got {
			if r.Path != "/v1.0/$batch" || r.Status != http.StatusOK {
				t.Errorf("request %s %s %d", r.Method, r.Path, r.Status)
				break
			}
		}
	}
	if got := len(h.tenant.BatchItems()) - items; got != n {
		t.Errorf("%d users read, want %d", got, n)
	}
	if st.Pending != n || st.Accepted != 3 || st.Untimely != 0 || st.Requests != wantReqs {
		t.Errorf("cycle = %+v, want %d pending, 3 accepted in %d requests", st, n, wantReqs)
	}
	if got := h.dmsWith("accepted your invitation"); got != 3 {
		t.Errorf("%d accepted DMs, want 3", got)
	}
	for _, inv := range redeemed {
		got := h.recordOf(t, inv.ID)
		if got.State != flows.StateAccepted || len(got.Outbox) != 0 {
			t.Errorf("%s = %s outbox %v", inv.ID, got.State, got.Outbox)
		}
		n := 0
		for _, m := range h.dmsTo(inv.Inviter.UserID) {
			if strings.Contains(m.Text, "accepted your invitation") && strings.Contains(m.Text, "("+inv.Request.Email+")") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d accepted DMs about %s to its inviter %s, want 1", n, inv.Request.Email, inv.Inviter.UserID)
		}
	}
	accepted, err := h.app.db.Invitations(h.ctx, flows.InvitationFilter{States: []flows.State{flows.StateAccepted}})
	if err != nil || len(accepted) != 3 {
		t.Errorf("%d records accepted, want 3 (%v)", len(accepted), err)
	}
}

// 5. The guest accepts while Graph is down: the cycle fails within its
// retry budget and tells nobody; the first cycle after the outage reports
// the acceptance once.
func TestE2EAcceptDuringGraphOutage(t *testing.T) {
	h := start(t)
	inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith")
	h.tenant.Redeem(inv.ObjectID)
	h.tenant.Fail(graphfake.RouteBatch, -1, graphfake.Unavailable())
	reqs := len(h.tenant.Requests())
	st, err := h.app.svc.Track(h.ctx)
	h.app.svc.Wait()
	if err == nil {
		t.Errorf("cycle during the outage succeeded: %+v", st)
	}
	if st.Accepted != 0 || st.Untimely != 1 {
		t.Errorf("cycle during the outage = %+v, want 1 unread, 0 accepted", st)
	}
	got := h.trackingRequests(reqs)
	if len(got) != flows.DefaultTransient.Attempts {
		t.Errorf("%d requests in the failed cycle, want the transient budget (%d)", len(got), flows.DefaultTransient.Attempts)
	}
	for _, r := range got {
		if r.Path != "/v1.0/$batch" || r.Status != http.StatusServiceUnavailable {
			t.Errorf("request %s %s %d", r.Method, r.Path, r.Status)
		}
	}
	if n := len(h.dmsTo(ann)); n != 1 {
		t.Errorf("%d DMs during the outage, want 1", n)
	}
	if rec := h.recordOf(t, inv.ID); rec.State != flows.StateNotified || len(rec.Outbox) != 0 {
		t.Errorf("record during the outage = %s outbox %v", rec.State, rec.Outbox)
	}

	h.tenant.Reset() // the outage ends
	if st := h.trackCycle(t); st.Accepted != 1 {
		t.Errorf("cycle after the outage = %+v, want 1 accepted", st)
	}
	h.trackCycle(t)
	if n := h.dmsWith("accepted your invitation"); n != 1 {
		t.Errorf("%d accepted DMs, want 1", n)
	}
	if rec := h.recordOf(t, inv.ID); rec.State != flows.StateAccepted {
		t.Errorf("record = %s", rec.State)
	}
}

// 5b. Graph throttles the batch: the tracker waits out the whole
// Retry-After window before the next batch, then reports the acceptance.
func TestE2EAcceptDuringThrottling(t *testing.T) {
	h := start(t)
	inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith")
	h.tenant.Redeem(inv.ObjectID)
	h.tenant.Fail(graphfake.RouteBatch, 2, graphfake.Throttled("3"))
	slept := len(h.sleeps.all())
	if st := h.trackCycle(t); st.Accepted != 1 || st.Requests != 3 {
		t.Errorf("cycle = %+v, want 1 accepted after 3 requests", st)
	}
	var windows int
	for _, d := range h.sleeps.all()[slept:] {
		if d > 2*time.Second && d <= 3*time.Second {
			windows++
		}
	}
	if windows != 2 {
		t.Errorf("waits = %v, want the 3 s Retry-After window waited out twice", h.sleeps.all()[slept:])
	}
	if n := h.dmsWith("accepted your invitation"); n != 1 {
		t.Errorf("%d accepted DMs, want 1", n)
	}
}

// holdBatches is a Graph transport that, once armed, holds every JSON
// batch until its request is cancelled: a tracking cycle stuck in flight.
type holdBatches struct {
	mu      sync.Mutex
	armed   bool
	entered chan struct{} // closed when a batch is held
}

func (hb *holdBatches) arm() {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	hb.armed, hb.entered = true, make(chan struct{})
}

func (hb *holdBatches) disarm() {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	hb.armed = false
}

func (hb *holdBatches) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/$batch") {
		hb.mu.Lock()
		armed := hb.armed
		if armed {
			select {
			case <-hb.entered:
			default:
				close(hb.entered)
			}
		}
		hb.mu.Unlock()
		if armed {
			<-r.Context().Done()
			return nil, r.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// 6. A restart in the middle of a cycle loses no acceptance and sends no
// second "accepted" DM.
func TestE2ERestartMidCycle(t *testing.T) {
	// The process stops while the background tracker's batch is in flight.
	t.Run("GraphReadInFlight", func(t *testing.T) {
		hb := &holdBatches{}
		h := startWith(t, overHTTP, deps{pollInterval: 50 * time.Millisecond, graphTransport: hb})
		inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith")
		hb.arm()
		select {
		case <-hb.entered:
		case <-h.ctx.Done():
			t.Fatal("the background tracker sent no batch")
		}
		h.tenant.Redeem(inv.ObjectID) // while the cycle's read is in flight
		if err := h.stopApp(); err != nil {
			t.Fatal(err)
		}
		if n := h.dmsWith("accepted your invitation"); n != 0 {
			t.Fatalf("%d accepted DMs before the restart", n)
		}
		hb.disarm()
		if err := h.startApp(); err != nil {
			t.Fatal(err)
		}
		if err := h.slack.WaitFor(h.ctx, func() bool { return h.dmsWith("accepted your invitation") > 0 }); err != nil {
			t.Fatalf("acceptance not reported after the restart: %v", err)
		}
		h.trackCycle(t)
		if n := h.dmsWith("accepted your invitation"); n != 1 {
			t.Errorf("%d accepted DMs, want 1", n)
		}
		if rec := h.recordOf(t, inv.ID); rec.State != flows.StateAccepted || len(rec.Outbox) != 0 {
			t.Errorf("record = %s outbox %v", rec.State, rec.Outbox)
		}
	})
	// The acceptance was recorded but Slack could not be told before the
	// process stopped: the notice waits in the outbox for the next cycle.
	t.Run("NoticeUndelivered", func(t *testing.T) {
		h := start(t)
		inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith", emuPortal)
		h.tenant.Redeem(inv.ObjectID)
		h.slack.Fail("chat.postMessage", -1, slackfake.Fault{Status: http.StatusServiceUnavailable})
		if st := h.trackCycle(t); st.Accepted != 1 {
			t.Errorf("cycle = %+v, want the acceptance recorded", st)
		}
		rec := h.recordOf(t, inv.ID)
		if rec.State != flows.StateAccepted || len(rec.Outbox) != 1 || rec.Outbox[0].Kind != flows.NoticeAccepted {
			t.Fatalf("record with Slack down = %s outbox %+v, want accepted with the notice kept", rec.State, rec.Outbox)
		}
		if n := len(h.slack.Calls("chat.postMessage")); n < 3 {
			t.Errorf("%d chat.postMessage calls, want the notice retried", n)
		}
		if err := h.stopApp(); err != nil {
			t.Fatal(err)
		}
		h.slack.Fail("chat.postMessage", 0, slackfake.Fault{}) // Slack is back
		if err := h.startApp(); err != nil {
			t.Fatal(err)
		}
		if st := h.trackCycle(t); st.Pending != 0 {
			t.Errorf("cycle after the restart = %+v, want nothing pending", st)
		}
		h.trackCycle(t)
		if n := h.dmsWith("accepted your invitation"); n != 1 {
			t.Errorf("%d accepted DMs, want 1", n)
		}
		if rec := h.recordOf(t, inv.ID); len(rec.Outbox) != 0 {
			t.Errorf("outbox = %+v, want empty", rec.Outbox)
		}
		if m, _ := h.slack.Message(inv.DM.Channel, inv.DM.TS); m.Edited == 0 || strings.Contains(msgText(m), "redeem") {
			t.Errorf("original DM not updated after the restart (edited %d)", m.Edited)
		}
	})
}

// 7. A guest deleted in Entra: a 404 within the grace period is replication
// delay; one that persists is reported once.
func TestE2EDeletedGuest(t *testing.T) {
	t.Run("PastGrace", func(t *testing.T) {
		h := startWith(t, overHTTP, deps{pollInterval: -1, missingGrace: time.Nanosecond})
		inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith")
		if !h.tenant.DeleteUser(inv.ObjectID) {
			t.Fatal("no user to delete")
		}
		if st := h.trackCycle(t); st.Removed != 0 {
			t.Errorf("first 404 = %+v, want nothing removed yet", st)
		}
		if rec := h.recordOf(t, inv.ID); rec.State != flows.StateNotified || rec.Tracking.MissingSince.IsZero() {
			t.Errorf("record after the first 404 = %s %+v, want notified with MissingSince", rec.State, rec.Tracking)
		}
		if n := len(h.dmsTo(ann)); n != 1 {
			t.Errorf("%d DMs after the first 404, want 1", n)
		}
		if st := h.trackCycle(t); st.Removed != 1 {
			t.Errorf("second 404 = %+v, want 1 removed", st)
		}
		dm := h.waitDM(t, 2)
		if !strings.Contains(dm, "deleted from Microsoft Entra") || !strings.Contains(dm, "not by invitebot") {
			t.Errorf("removed DM:\n%s", dm)
		}
		if st := h.trackCycle(t); st.Pending != 0 || st.Removed != 0 {
			t.Errorf("cycle after removal = %+v", st)
		}
		if n := h.dmsWith("deleted from Microsoft Entra"); n != 1 {
			t.Errorf("%d removed DMs, want 1", n)
		}
		rec := h.recordOf(t, inv.ID)
		if rec.State != flows.StateRemoved || len(rec.Outbox) != 0 {
			t.Errorf("record = %s outbox %v, want removed", rec.State, rec.Outbox)
		}
		if g, err := h.app.db.Guest(h.ctx, inv.ObjectID); err != nil || g.State != flows.StateRemoved {
			t.Errorf("guest = %+v, %v; want removed", g, err)
		}
		if m, _ := h.slack.Message(inv.DM.Channel, inv.DM.TS); m.Edited == 0 || strings.Contains(msgText(m), "redeem") {
			t.Errorf("original DM not updated (edited %d):\n%s", m.Edited, msgText(m))
		}
	})
	t.Run("WithinGrace", func(t *testing.T) {
		h := start(t) // the default grace: 10 minutes
		inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith")
		u, _ := h.tenant.User(inv.ObjectID)
		h.tenant.DeleteUser(inv.ObjectID)
		h.trackCycle(t)
		h.trackCycle(t)
		if rec := h.recordOf(t, inv.ID); rec.State != flows.StateNotified || rec.Tracking.MissingSince.IsZero() {
			t.Errorf("record = %s %+v, want notified and missing", rec.State, rec.Tracking)
		}
		h.tenant.AddUser(u) // it was replication delay after all
		h.trackCycle(t)
		if rec := h.recordOf(t, inv.ID); rec.State != flows.StateNotified || !rec.Tracking.MissingSince.IsZero() {
			t.Errorf("record after the user reappeared = %s %+v, want MissingSince cleared", rec.State, rec.Tracking)
		}
		if n := len(h.dmsTo(ann)); n != 1 {
			t.Errorf("%d DMs, want 1", n)
		}
	})
}

// 8. Five concurrent clicks on Resend make one re-invitation.
func TestE2EConcurrentResendClicks(t *testing.T) { bothTransports(t, testConcurrentResendClicks) }

func testConcurrentResendClicks(t *testing.T, h *harness) {
	inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith")
	first := h.dmsTo(ann)[0]
	firstLinks := redeemLinks(msgText(first))
	if len(firstLinks) != 1 {
		t.Fatalf("first DM links = %v", firstLinks)
	}
	invitations := len(h.tenant.Invitations())
	// Graph is slow: every click lands while the first one's re-invitation runs.
	h.tenant.SetLatency(graphfake.RoutePostInvitations, 2*time.Second)
	if !hasButton(first, bot.ActionResend) {
		t.Errorf("the outcome DM %q of a pending invitation has no Resend button", first.Text)
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			r, err := h.clickDM(ann, first, bot.ActionResend, inv.ID)
			if err != nil || r.Status != http.StatusOK {
				t.Errorf("press: %v %d %s", err, r.Status, r.Body)
			}
		})
	}
	wg.Wait()
	replies := h.ephemeralsTo(ann)
	if countContaining(replies, "Working on it") != 1 || countContaining(replies, "still running") != 4 {
		t.Errorf("replies = %q, want one \"Working on it\" and four \"still running\"", replies)
	}
	if err := h.slack.WaitFor(h.ctx, func() bool { return h.dmsWith("Invitation sent again") > 0 }); err != nil {
		t.Fatalf("no resend DM: %v", err)
	}
	h.app.svc.Wait()
	h.tenant.SetLatency(graphfake.RoutePostInvitations, 0)
	invs := h.tenant.Invitations()
	if n := len(invs) - invitations; n != 1 {
		t.Fatalf("%d re-invitations, want 1", n)
	}
	if b := invs[len(invs)-1].Body; b["invitedUserEmailAddress"] != "bob@fabrikam.com" || b["sendInvitationMessage"] != false || invs[len(invs)-1].UserID != inv.ObjectID {
		t.Errorf("re-invitation = %+v", invs[len(invs)-1])
	}
	dms := h.dmsTo(ann)
	if len(dms) != 2 {
		t.Fatalf("%d DMs, want the outcome and one resend", len(dms))
	}
	fresh := redeemLinks(msgText(dms[1]))
	if len(fresh) != 1 || fresh[0] == firstLinks[0] {
		t.Errorf("resend DM links = %v, want one fresh link (first was %v)", fresh, firstLinks)
	}
	rec := h.recordOf(t, inv.ID)
	if rec.Action != nil || rec.Tracking.Resends != 1 || len(rec.Outbox) != 0 || !rec.Pending() || rec.InvitedAt.Equal(inv.InvitedAt) {
		t.Errorf("record = %s action %+v tracking %+v outbox %v", rec.State, rec.Action, rec.Tracking, rec.Outbox)
	}
	// Once it has finished, Resend works again.
	h.pressDM(t, ann, h.latestVersion(first), bot.ActionResend, inv.ID)
	h.app.svc.Wait()
	if n := countContaining(h.ephemeralsTo(ann), "Working on it"); n != 2 {
		t.Errorf("a click after the resend finished got %q", h.ephemeralsTo(ann))
	}
	if n := len(h.tenant.Invitations()) - invitations; n != 2 {
		t.Errorf("%d re-invitations after a second, later click, want 2", n)
	}
}

// 9. Actions check who may take them; a refused action does nothing.
func TestE2ENonAdminRefused(t *testing.T) {
	h := start(t)
	inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith", emuPortal)
	dm := h.dmsTo(ann)[0]
	reqs, invitations, opened := len(h.tenant.Requests()), len(h.tenant.Invitations()), len(h.slack.Calls("views.open"))
	forge := func(user, actionID string) {
		t.Helper()
		r, err := h.player.Action(h.ctx, user, slackfake.MessageContainer(dm),
			map[string]any{"type": "button", "action_id": actionID, "block_id": bot.BlockInvitationActions, "value": inv.ID})
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("%s presses %s: %v %d %s", user, actionID, err, r.Status, r.Body)
		}
	}
	forge(ann, bot.ActionReset)
	forge(ann, bot.ActionDelete)
	if replies := h.ephemeralsTo(ann); len(replies) != 2 || countContaining(replies, "Only invitebot admins") != 2 {
		t.Errorf("Ann's replies = %q, want two admin-only refusals", replies)
	}
	for _, action := range []string{bot.ActionResend, bot.ActionRevoke, bot.ActionReset, bot.ActionDelete} {
		forge(mallory, action)
	}
	replies := h.ephemeralsTo(mallory)
	if len(replies) != 4 || countContaining(replies, "Only the person who sent") != 2 || countContaining(replies, "Only invitebot admins") != 2 {
		t.Errorf("Mallory's replies = %q", replies)
	}
	h.app.svc.Wait()
	if w := h.graphWrites(reqs); len(w) != 0 || len(h.tenant.Invitations()) != invitations {
		t.Errorf("refused actions reached Graph: %+v", w)
	}
	if n := len(h.slack.Calls("views.open")) - opened; n != 0 {
		t.Errorf("%d dialogs opened for refused actions", n)
	}
	if m := h.tenant.GroupMembers(emuPortal); len(m) != 1 {
		t.Errorf("members = %v", m)
	}
	rec := h.recordOf(t, inv.ID)
	// Refused attempts are audited, and change nothing else.
	refused := 0
	for _, ev := range rec.History[len(inv.History):] {
		if ev.Action == "refused" {
			refused++
		}
	}
	if rec.Action != nil || rec.State != flows.StateNotified || refused == 0 || refused != len(rec.History)-len(inv.History) {
		t.Errorf("record after refused actions: %s action %+v, %d new events of which %d refusals", rec.State, rec.Action, len(rec.History)-len(inv.History), refused)
	}
	if n := len(h.dmsTo(ann)); n != 1 {
		t.Errorf("%d DMs to Ann, want 1", n)
	}
}

// 10. The Home tab lists invitations; an admin resets a redemption and
// deletes a guest (after a confirmation dialog) from it.
func TestE2EHomeTab(t *testing.T) { bothTransports(t, testHomeTab) }

func testHomeTab(t *testing.T, h *harness) {
	if home := h.openHome(t, ann); !strings.Contains(home, "No invitations yet") {
		t.Errorf("empty Home tab:\n%s", home)
	}
	inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith", emuPortal)
	uid := inv.ObjectID

	home := h.openHome(t, ann)
	if !strings.Contains(home, "bob@fabrikam.com") || !strings.Contains(home, "Pending for") || strings.Contains(home, "invited by") {
		t.Errorf("Ann's Home tab:\n%s", home)
	}
	opts := h.homeOptions(t, ann)
	if !contains(opts, bot.ActionResend+":"+inv.ID) || !contains(opts, bot.ActionRevoke+":"+inv.ID) ||
		contains(opts, bot.ActionReset+":"+inv.ID) || contains(opts, bot.ActionDelete+":"+inv.ID) {
		t.Errorf("Ann's options = %v, want Resend and Revoke only", opts)
	}
	home = h.openHome(t, emuAdmin)
	if !strings.Contains(home, "bob@fabrikam.com") || !strings.Contains(home, "invited by <@"+ann+">") || !strings.Contains(home, "All invitations") {
		t.Errorf("admin's Home tab:\n%s", home)
	}
	if opts := h.homeOptions(t, emuAdmin); !contains(opts, bot.ActionReset+":"+inv.ID) || !contains(opts, bot.ActionDelete+":"+inv.ID) {
		t.Errorf("admin's options = %v", opts)
	}

	// Accepted, then reset by an admin: the guest must redeem again.
	h.tenant.Redeem(uid)
	h.trackCycle(t)
	if home := h.openHome(t, ann); !strings.Contains(home, "Accepted") || strings.Contains(home, "Pending for") {
		t.Errorf("Ann's Home tab after acceptance:\n%s", home)
	}
	h.openHome(t, emuAdmin)
	invitations := len(h.tenant.Invitations())
	if v := h.pressHome(t, emuAdmin, bot.ActionReset+":"+inv.ID); v != "" {
		t.Errorf("reset opened a dialog %s", v)
	}
	h.app.svc.Wait()
	invs := h.tenant.Invitations()
	if len(invs) != invitations+1 {
		t.Fatalf("%d invitations after reset, want %d", len(invs), invitations+1)
	}
	body := invs[len(invs)-1].Body
	invited, _ := body["invitedUser"].(map[string]any)
	if body["resetRedemption"] != true || invited["id"] != uid || body["invitedUserEmailAddress"] != "bob@fabrikam.com" {
		t.Errorf("reset invitation body = %v", body)
	}
	rec := h.recordOf(t, inv.ID)
	if rec.State != flows.StateNotified || !rec.Pending() || rec.Action != nil || len(rec.Outbox) != 0 {
		t.Errorf("record after reset = %s %+v action %+v outbox %v, want pending again", rec.State, rec.Tracking, rec.Action, rec.Outbox)
	}
	if u, _ := h.tenant.User(uid); u.ExternalUserState != flows.ExternalPending {
		t.Errorf("tenant user state after reset = %q", u.ExternalUserState)
	}
	if n := h.dmsWith("Redemption reset"); n < 1 {
		t.Errorf("no DM about the reset")
	}
	if st := h.trackCycle(t); st.Pending != 1 || st.Accepted != 0 {
		t.Errorf("cycle after reset = %+v, want 1 pending", st)
	}
	h.tenant.Redeem(uid) // the guest redeems again
	if st := h.trackCycle(t); st.Accepted != 1 {
		t.Errorf("cycle after the second redemption = %+v, want 1 accepted", st)
	}
	if n := h.dmsWith("accepted your invitation"); n != 2 {
		t.Errorf("%d accepted DMs, want 2 (one per redemption)", n)
	}

	// Delete, confirmed in a dialog.
	h.openHome(t, emuAdmin)
	view := h.pressHome(t, emuAdmin, bot.ActionDelete+":"+inv.ID)
	if view == "" || h.viewCallback(view) != bot.CallbackConfirmDelete {
		t.Fatalf("delete opened view %q (callback %q), want the confirmation dialog", view, h.viewCallback(view))
	}
	if _, ok := h.tenant.User(uid); !ok {
		t.Fatal("the user was deleted before the admin confirmed")
	}
	// The confirmation is the admin's: Ann submitting it (a forged
	// submission) is refused and deletes nothing.
	r, err := h.player.Submit(h.ctx, ann, view, map[string]map[string]any{})
	if err != nil || r.Status != http.StatusOK || r.JSON()["response_action"] != "update" || !strings.Contains(string(r.Body), "Only invitebot admins") {
		t.Errorf("Ann's submission of the admin's confirmation: %v %d %s, want the dialog to say only admins may", err, r.Status, r.Body)
	}
	h.app.svc.Wait()
	if _, ok := h.tenant.User(uid); !ok {
		t.Fatal("a non-admin's confirmation deleted the user")
	}
	// The forged answer replaced the dialog in the fake; the admin opens it again.
	h.openHome(t, emuAdmin)
	view = h.pressHome(t, emuAdmin, bot.ActionDelete+":"+inv.ID)
	r, err = h.player.Submit(h.ctx, emuAdmin, view, map[string]map[string]any{})
	if err != nil || r.Status != http.StatusOK || r.JSON()["response_action"] != "clear" {
		t.Fatalf("confirm: %v %d %s", err, r.Status, r.Body)
	}
	h.app.svc.Wait()
	if _, ok := h.tenant.User(uid); ok {
		t.Error("the user still exists after a confirmed delete")
	}
	if rec := h.recordOf(t, inv.ID); rec.State != flows.StateRevoked || rec.Action != nil || len(rec.Outbox) != 0 {
		t.Errorf("record after delete = %s action %+v outbox %v", rec.State, rec.Action, rec.Outbox)
	}
	var toAnn, toAdmin bool
	for _, m := range h.dmsTo(ann) {
		toAnn = toAnn || strings.Contains(m.Text, "was deleted from Microsoft Entra") && strings.Contains(m.Text, "<@"+emuAdmin+">")
	}
	for _, m := range h.dmsTo(emuAdmin) {
		toAdmin = toAdmin || strings.Contains(m.Text, "delete the guest")
	}
	if !toAnn || !toAdmin {
		t.Errorf("deletion DMs: inviter told %v, admin confirmed %v", toAnn, toAdmin)
	}
	if home := h.homeText(ann); !strings.Contains(home, "Revoked") {
		t.Errorf("Ann's Home tab after delete (refreshed by the notice):\n%s", home)
	}
}

// 11. Revoke removes the guest from the groups invitebot added.
func TestE2ERevokeGroups(t *testing.T) {
	h := start(t)
	inv := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith", emuPortal)
	if m := h.tenant.GroupMembers(emuPortal); len(m) != 1 {
		t.Fatalf("members = %v", m)
	}
	dm := h.dmsTo(ann)[0]
	h.pressDM(t, ann, dm, bot.ActionRevoke, inv.ID)
	if replies := h.ephemeralsTo(ann); len(replies) != 1 || !strings.Contains(replies[0], "Working on it") {
		t.Errorf("replies = %q", replies)
	}
	h.app.svc.Wait()
	if m := h.tenant.GroupMembers(emuPortal); len(m) != 0 {
		t.Errorf("members after revoke = %v", m)
	}
	if _, ok := h.tenant.User(inv.ObjectID); !ok {
		t.Error("revoke deleted the user")
	}
	rec := h.recordOf(t, inv.ID)
	if rec.State != flows.StateRevoked || rec.Action != nil || len(rec.Outbox) != 0 {
		t.Errorf("record = %s action %+v outbox %v", rec.State, rec.Action, rec.Outbox)
	}
	if g, err := h.app.db.Guest(h.ctx, inv.ObjectID); err != nil || g.State != flows.StateRevoked || len(g.Groups) != 0 {
		t.Errorf("guest = %+v, %v; want revoked without groups", g, err)
	}
	msg := h.waitDM(t, 2)
	if !strings.Contains(msg, "was removed from Partner portal users") {
		t.Errorf("revoke DM:\n%s", msg)
	}
	if m, _ := h.slack.Message(dm.Channel, dm.TS); m.Edited == 0 || strings.Contains(msgText(m), "redeem") || strings.Contains(msgText(m), `"action_id":"revoke"`) {
		t.Errorf("original DM after revoke:\n%s", msgText(m))
	}
	var revoked bool
	events, _ := h.app.db.AuditLog(h.ctx, time.Time{})
	for _, e := range events {
		revoked = revoked || e.InvitationID == inv.ID && e.Action == string(flows.ActionRevokeGroups) && e.Actor == ann
	}
	if !revoked {
		t.Errorf("no audit event for the revoke: %+v", events)
	}
	if st := h.trackCycle(t); st.Pending != 0 {
		t.Errorf("a revoked invitation is still tracked: %+v", st)
	}
}

// 12. An invitation pending longer than INVITEBOT_REMIND_AFTER (72 h by
// default) gets one reminder with Resend.
func TestE2EReminder(t *testing.T) {
	h := start(t)
	old := h.inviteGuest(t, "bob@fabrikam.com", "Bob Smith", emuPortal)
	fresh := h.inviteGuest(t, "carol@fabrikam.com", "Carol")
	// Four days pass for Bob's invitation.
	if _, err := h.app.db.UpdateInvitation(h.ctx, old.ID, func(inv *flows.Invitation) error {
		inv.InvitedAt = inv.InvitedAt.Add(-96 * time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if st := h.trackCycle(t); st.Reminded != 1 {
		t.Errorf("cycle = %+v, want 1 reminder", st)
	}
	dms := h.dmsTo(ann)
	if len(dms) != 3 {
		t.Fatalf("%d DMs, want the two outcomes and one reminder", len(dms))
	}
	reminder := dms[2]
	if all := msgText(reminder); !strings.Contains(all, "has not accepted your invitation yet") || !strings.Contains(all, "bob@fabrikam.com") ||
		!strings.Contains(all, "4 days") || !strings.Contains(all, `"action_id":"resend"`) || !strings.Contains(all, `"action_id":"revoke"`) {
		t.Errorf("reminder:\n%s", all)
	}
	h.trackCycle(t)
	h.trackCycle(t)
	if n := h.dmsWith("has not accepted your invitation yet"); n != 1 {
		t.Errorf("%d reminders, want 1", n)
	}
	if rec := h.recordOf(t, old.ID); rec.Tracking.RemindedAt.IsZero() || len(rec.Outbox) != 0 {
		t.Errorf("record = %+v outbox %v", rec.Tracking, rec.Outbox)
	}
	if rec := h.recordOf(t, fresh.ID); !rec.Tracking.RemindedAt.IsZero() {
		t.Errorf("a fresh invitation was reminded")
	}
	// The reminder's Resend works.
	invitations := len(h.tenant.Invitations())
	h.pressDM(t, ann, reminder, bot.ActionResend, old.ID)
	h.app.svc.Wait()
	if n := len(h.tenant.Invitations()) - invitations; n != 1 {
		t.Errorf("%d re-invitations from the reminder's Resend, want 1", n)
	}
}

// 13. An admin converts an internal account to B2B; the account must be
// cloud-only and its mail must be the external address.
func TestE2EConvertInternalUser(t *testing.T) {
	h := start(t)
	dana := h.tenant.AddUser(graphfake.User{DisplayName: "Dana Lee", Mail: "dana@partner.com", UserPrincipalName: "dana@contoso.com",
		UserType: "Member", AccountEnabled: true})
	erin := h.tenant.AddUser(graphfake.User{DisplayName: "Erin", Mail: "erin@partner.com", UserPrincipalName: "erin@contoso.com",
		UserType: "Member", OnPremisesUserPrincipalName: "erin@corp.contoso.local", AccountEnabled: true})
	frank := h.tenant.AddUser(graphfake.User{DisplayName: "Frank", Mail: "frank@contoso.com", UserPrincipalName: "frank@contoso.com",
		UserType: "Member", AccountEnabled: true})
	users := len(h.tenant.Users())
	convert := func(user, text string) string {
		t.Helper()
		r, view, err := h.player.Command(h.ctx, user, bot.Command, text)
		if err != nil || r.Status != http.StatusOK || view != "" {
			t.Fatalf("convert: %v %d %s (view %q)", err, r.Status, r.Body, view)
		}
		s, _ := r.JSON()["text"].(string)
		return s
	}
	adminDM := func(n int) string {
		t.Helper()
		if err := h.slack.WaitFor(h.ctx, func() bool { return len(h.dmsTo(emuAdmin)) >= n }); err != nil {
			t.Fatalf("waiting for the admin's DM %d: %v (log: %s)", n, err, h.logs.String())
		}
		h.app.svc.Wait()
		return msgText(h.dmsTo(emuAdmin)[n-1])
	}

	// A non-admin is refused and nothing is recorded.
	if ack := convert(ann, "convert dana@contoso.com dana@partner.com"); !strings.Contains(ack, "Only invitebot admins") {
		t.Errorf("non-admin convert answered %q", ack)
	}
	if invs, _ := h.app.db.Invitations(h.ctx, flows.InvitationFilter{}); len(invs) != 0 {
		t.Errorf("%d records after a refused convert", len(invs))
	}

	if ack := convert(emuAdmin, "convert dana@contoso.com dana@partner.com"); !strings.Contains(ack, "Converting") {
		t.Errorf("convert answered %q", ack)
	}
	dm := adminDM(1)
	invs := h.tenant.Invitations()
	if len(invs) != 1 {
		t.Fatalf("%d invitations, want 1", len(invs))
	}
	invited, _ := invs[0].Body["invitedUser"].(map[string]any)
	if invited["id"] != dana.ID || invs[0].Body["invitedUserEmailAddress"] != "dana@partner.com" || invs[0].UserID != dana.ID || invs[0].Body["resetRedemption"] == true {
		t.Errorf("invitation = %+v, want invitedUser.id %s", invs[0], dana.ID)
	}
	if len(h.tenant.Users()) != users {
		t.Errorf("conversion created a user")
	}
	if len(redeemLinks(dm)) != 1 || !strings.Contains(dm, "Converted from an internal account") {
		t.Errorf("admin DM:\n%s", dm)
	}
	rec := h.invitation(t)
	if rec.State != flows.StateNotified || rec.ObjectID != dana.ID || rec.Request.ConvertFrom != "dana@contoso.com" || !rec.Pending() {
		t.Errorf("record = %s %s %+v", rec.State, rec.ObjectID, rec.Request)
	}
	if u, _ := h.tenant.User(dana.ID); u.ExternalUserState != flows.ExternalPending || u.UserPrincipalName != "dana@contoso.com" {
		t.Errorf("converted user = %+v", u)
	}

	// Synced from on-premises: refused, nothing POSTed.
	convert(emuAdmin, "convert erin@contoso.com erin@partner.com")
	dm = adminDM(2)
	if !strings.Contains(dm, "on-premises") || !strings.Contains(dm, "cannot be converted") {
		t.Errorf("on-premises refusal DM:\n%s", dm)
	}
	if rec := h.invitation(t); rec.State != flows.StateFailed || rec.Failure == nil || rec.Failure.Code != flows.FailConvertRefused || rec.Request.ConvertFrom != "erin@contoso.com" {
		t.Errorf("record = %s %+v", rec.State, rec.Failure)
	}
	// The account's mail is not the external address: refused.
	convert(emuAdmin, "convert frank@contoso.com frank@partner.com")
	dm = adminDM(3)
	if !strings.Contains(dm, "mail") || !strings.Contains(dm, "cannot be converted") {
		t.Errorf("mail mismatch refusal DM:\n%s", dm)
	}
	if n := len(h.tenant.Invitations()); n != 1 {
		t.Errorf("%d invitations after refused conversions, want 1", n)
	}

	// From the admin's Home tab: the convert dialog.
	gina := h.tenant.AddUser(graphfake.User{DisplayName: "Gina", Mail: "gina@partner.com", UserPrincipalName: "gina@contoso.com",
		UserType: "Member", AccountEnabled: true})
	h.openHome(t, emuAdmin)
	r, view, err := h.player.PressOpen(h.ctx, emuAdmin, slackfake.HomeContainer(emuAdmin), bot.ActionConvertOpen, "", "")
	if err != nil || r.Status != http.StatusOK || view == "" || h.viewCallback(view) != bot.CallbackConvert {
		t.Fatalf("convert button: %v %d %s, view %q", err, r.Status, r.Body, view)
	}
	r, err = h.player.Submit(h.ctx, emuAdmin, view, map[string]map[string]any{
		bot.BlockConvertAccount: {bot.BlockConvertAccount: slackfake.Text("gina@contoso.com")},
		bot.BlockEmail:          {bot.BlockEmail: slackfake.Text("gina@partner.com")},
	})
	if err != nil || r.Status != http.StatusOK || r.JSON()["response_action"] != "clear" {
		t.Fatalf("convert dialog: %v %d %s", err, r.Status, r.Body)
	}
	if dm := adminDM(4); len(redeemLinks(dm)) != 1 {
		t.Errorf("admin DM for the dialog's conversion:\n%s", dm)
	}
	if invs := h.tenant.Invitations(); len(invs) != 2 || invs[1].UserID != gina.ID {
		t.Errorf("invitations = %+v, want the second for %s", invs, gina.ID)
	}
	// A non-admin cannot open the dialog (a forged press).
	r, err = h.player.Action(h.ctx, ann, slackfake.HomeContainer(emuAdmin),
		map[string]any{"type": "button", "action_id": bot.ActionConvertOpen, "block_id": "home_admin"})
	if err != nil || r.Status != http.StatusOK || countContaining(h.ephemeralsTo(ann), "Only invitebot admins can convert") != 1 {
		t.Errorf("non-admin convert button: %v %d, replies %q", err, r.Status, h.ephemeralsTo(ann))
	}
	for _, u := range []graphfake.User{erin, frank} {
		if got, _ := h.tenant.User(u.ID); got.ExternalUserState != "" {
			t.Errorf("%s was changed: %+v", u.UserPrincipalName, got)
		}
	}
}

package main

// Two `invitebot serve` replicas (child processes of this test binary, as
// in crash_test.go) on one PostgreSQL database and one set of emulators:
// a submission Slack delivers to both is one invitation and one DM, and
// when the replica holding the background lease is SIGKILLed, the other
// takes the lease and finishes its invitation, once.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// replicaTTL is the replicas' INVITEBOT_LEASE_TTL (the least allowed).
const replicaTTL = 5 * time.Second

// replica is one serve process of a replicaRig.
type replica struct {
	name string
	addr string
	logs *logBuffer
	// graph is what this replica asked the emulated tenant: each replica
	// has its own Graph endpoint (GRAPH_BASE_URL) in front of the one
	// tenant, so a request tells which process sent it.
	graph *callLog
	cmd   *exec.Cmd
	done  chan struct{} // closed when the process has exited
}

// callLog records the keys of the requests that passed through it.
type callLog struct {
	mu   sync.Mutex
	keys []string
}

// front records each request's key, then hands it to next.
func (c *callLog) front(key func(*http.Request) string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.keys = append(c.keys, key(r))
		c.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// count is how many requests with key passed.
func (c *callLog) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.keys {
		if k == key {
			n++
		}
	}
	return n
}

// replicaRig is a crash rig whose children share one PostgreSQL database.
type replicaRig struct {
	*crashRig
	pg    string
	store backend // the test's own connection to the database, for records
	// invs are the inviters added besides Ann (replicas_more_e2e_test.go).
	invs []string
}

func newReplicaRig(t *testing.T) *replicaRig {
	t.Helper()
	return &replicaRig{crashRig: newCrashRig(t), pg: pgtest.URL(t)}
}

// replica starts a serve process on the shared database, with env added
// to (or replacing) the rig's, and waits until it answers /healthz.
func (r *replicaRig) replica(ctx context.Context, name string, env ...string) *replica {
	r.t.Helper()
	rp := &replica{name: name, addr: freeAddr(r.t), logs: &logBuffer{}, graph: &callLog{}}
	graph := r.hub.serve(r.t, graphKey, rp.graph.front(graphKey, r.tenant))
	rp.cmd, rp.done = r.child(rp.logs, append([]string{"INVITEBOT_DB=" + r.pg, "INVITEBOT_ADDR=" + rp.addr,
		"INVITEBOT_LEASE_TTL=" + replicaTTL.String(), "GRAPH_BASE_URL=" + graph.URL + "/v1.0"}, env...)...)
	done := rp.done
	r.t.Cleanup(func() {
		_ = rp.cmd.Process.Kill()
		<-done
		logs := rp.logs.String()
		for _, s := range []string{emuSecret, emuSigning, "xoxb-emulated", "redeem?", "ticket", "postgres:s"} {
			if strings.Contains(logs, s) {
				r.t.Errorf("%s's log contains %q", name, s)
			}
		}
	})
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	err := poll(ctx, func() bool {
		select {
		case <-done:
			r.t.Fatalf("%s exited before it was healthy; log tail:\n%s", name, tail(rp.logs.String(), 2000))
		default:
		}
		resp, err := c.Get("http://" + rp.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		r.t.Fatalf("%s not healthy: %v", name, err)
	}
	return rp
}

// leading reports whether rp has taken the background lease.
func (rp *replica) leading() bool {
	return strings.Contains(rp.logs.String(), "leading: running the background work")
}

// stop ends rp with SIGTERM and waits for it.
func (r *replicaRig) stop(ctx context.Context, rp *replica) {
	r.t.Helper()
	if err := rp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatal(err)
	}
	select {
	case <-rp.done:
	case <-ctx.Done():
		r.t.Fatalf("%s did not stop on SIGTERM: %v", rp.name, ctx.Err())
	}
}

// count is how many requests with key the emulators have seen.
func (r *replicaRig) count(key string) int {
	n := 0
	for _, k := range r.hub.keysSince(0) {
		if k == key {
			n++
		}
	}
	return n
}

// submission is a signed view_submission of view viewID by user, as Slack
// sends it: the same bytes and headers can be delivered to any replica.
type submission struct {
	body   []byte
	header http.Header
}

func (r *replicaRig) submission(user, viewID string, values map[string]map[string]any) submission {
	r.t.Helper()
	sub, err := r.signedSubmission(user, viewID, values)
	if err != nil {
		r.t.Fatal(err)
	}
	return sub
}

// signedSubmission is submission for any goroutine: it returns its error.
func (r *replicaRig) signedSubmission(user, viewID string, values map[string]map[string]any) (submission, error) {
	raw, ok := r.slack.View(viewID)
	if !ok {
		return submission{}, fmt.Errorf("no view %s", viewID)
	}
	var view map[string]any
	if err := json.Unmarshal(raw, &view); err != nil {
		return submission{}, err
	}
	view["state"] = map[string]any{"values": values}
	payload, err := json.Marshal(map[string]any{
		"type": "view_submission", "team": map[string]any{"id": emuTeam}, "user": map[string]any{"id": user},
		"api_app_id": slackfake.AppID, "trigger_id": r.slack.NewTriggerID(), "view": view,
	})
	if err != nil {
		return submission{}, err
	}
	body := []byte(url.Values{"payload": {string(payload)}}.Encode())
	req, _ := http.NewRequest(http.MethodPost, "http://unused/", nil)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	slackfake.Sign(req, body, emuSigning, time.Now())
	return submission{body: body, header: req.Header}, nil
}

// deliver posts s to rp's /slack/interactions and returns the status.
func (s submission) deliver(ctx context.Context, rp *replica) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+rp.addr+"/slack/interactions", bytes.NewReader(s.body))
	if err != nil {
		return 0, err
	}
	req.Header = s.header.Clone()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// openDialog runs /invite for email on rp and returns the view it opened.
func (r *replicaRig) openDialog(ctx context.Context, rp *replica, email string) string {
	r.t.Helper()
	view, err := r.dialog(ctx, rp, ann, email)
	if err != nil {
		r.t.Fatal(err)
	}
	return view
}

// dialog is openDialog for any goroutine and inviter: it returns its error.
func (r *replicaRig) dialog(ctx context.Context, rp *replica, user, email string) (string, error) {
	p := *r.player
	p.BotURL = "http://" + rp.addr
	resp, view, err := p.Command(ctx, user, bot.Command, email)
	if err != nil || resp.Status != http.StatusOK || view == "" {
		return "", fmt.Errorf("command on %s: %v %d %s", rp.name, err, resp.Status, resp.Body)
	}
	return view, nil
}

// ready waits until rp answers /readyz with 200.
func (r *replicaRig) ready(ctx context.Context, rp *replica) {
	r.t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 3 * time.Second}
	err := poll(ctx, func() bool {
		resp, err := c.Get("http://" + rp.addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		r.t.Fatalf("%s not ready: %v; log tail:\n%s", rp.name, err, tail(rp.logs.String(), 2000))
	}
}

// records reads the shared database (the replicas may be running): every
// invitation by email; two records for one address fail the test.
func (r *replicaRig) records(ctx context.Context) map[string]*flows.Invitation {
	r.t.Helper()
	if r.store == nil {
		db, err := openStore(ctx, r.pg, storeOptions{})
		if err != nil {
			r.t.Fatal(err)
		}
		r.store = db
		r.t.Cleanup(func() { db.Close() })
	}
	invs, err := r.store.Invitations(ctx, flows.InvitationFilter{})
	if err != nil {
		r.t.Fatal(err)
	}
	return byEmail(r.t, invs)
}

// acceptDMs counts the acceptance DMs, to any inviter, per guest address
// (the guests have display names: "*Name* (address) accepted your
// invitation").
func (r *replicaRig) acceptDMs() map[string]int {
	out := map[string]int{}
	for _, m := range r.slack.Messages() {
		if m.Ephemeral {
			continue
		}
		if before, _, ok := strings.Cut(m.Text, ") accepted your invitation"); ok {
			if i := strings.LastIndex(before, "("); i >= 0 {
				out[before[i+1:]]++
			}
		}
	}
	return out
}

// outcomeDMsToAll is outcomeDMs for every inviter.
func (r *replicaRig) outcomeDMsToAll() map[string]int {
	out := map[string]int{}
	for _, m := range r.slack.Messages() {
		if m.Ephemeral || !strings.HasPrefix(m.Channel, "D") {
			continue
		}
		for _, p := range []string{"Invited ", "Could not invite "} {
			if email, ok := strings.CutPrefix(m.Text, p); ok {
				out[email]++
			}
		}
	}
	return out
}

// The same signed submission, delivered to both replicas at once (Slack
// retrying on another replica behind a load balancer), is one invitation
// in Entra and one outcome DM.
func TestReplicasDuplicateSubmission(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	r := newReplicaRig(t)
	const email = "bob@fabrikam.com"
	a, b := r.replica(ctx, "replica A"), r.replica(ctx, "replica B")
	if err := poll(ctx, func() bool { return a.leading() || b.leading() }); err != nil {
		t.Fatalf("no replica took the lease: %v", err)
	}

	sub := r.submission(ann, r.openDialog(ctx, a, email), inviteValues(email, "Bob", "slack_link", emuPortal))
	var wg sync.WaitGroup
	status := make([]int, 2)
	errs := make([]error, 2)
	for i, rp := range []*replica{a, b} {
		wg.Go(func() { status[i], errs[i] = sub.deliver(ctx, rp) })
	}
	wg.Wait()
	for i, rp := range []*replica{a, b} {
		if errs[i] != nil || status[i] != http.StatusOK {
			t.Errorf("%s answered the submission with %d, %v; want 200", rp.name, status[i], errs[i])
		}
	}
	// The flow ends with the sponsor, after the DM.
	if err := poll(ctx, func() bool {
		return r.outcomeDMs()[email] >= 1 && r.count("POST /users/{id}/sponsors") >= 1
	}); err != nil {
		t.Fatalf("the invitation did not finish: %v; logs:\nA: %s\nB: %s", err, tail(a.logs.String(), 2000), tail(b.logs.String(), 2000))
	}
	r.stop(ctx, a)
	r.stop(ctx, b)
	r.hub.drain()
	// Both replicas reached the store: one recorded the invitation, the
	// other found it by the view's origin.
	logs := a.logs.String() + b.logs.String()
	for msg, want := range map[string]int{`"msg":"invitation requested"`: 1, `"msg":"duplicate submission"`: 1} {
		if n := strings.Count(logs, msg); n != want {
			t.Errorf("%d %s in the replicas' logs, want %d", n, msg, want)
		}
	}
	if n := r.count("POST /invitations"); n != 1 {
		t.Errorf("%d POST /invitations, want 1", n)
	}
	if n := r.outcomeDMs()[email]; n != 1 {
		t.Errorf("%d outcome DMs, want 1", n)
	}
	if n := len(r.tenant.Users()); n != 2 { // Ann and Bob
		t.Errorf("%d users in the tenant, want 2 (Ann and one guest)", n)
	}
}

// The leader is SIGKILLed with an invitation in flight (Entra has the
// guest; the group request never arrives): the other replica takes the
// lease once it lapses (within the TTL of the leader's last renewal) and
// finishes the invitation, without inviting again or DMing twice.
func TestReplicasLeaderKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	r := newReplicaRig(t)
	const email = "bob@fabrikam.com"
	a, b := r.leaderAndFollower(ctx)

	r.heldAtGroupStep(ctx, a, email, nil)
	killed := r.kill(a)

	// The lease lapses at most a TTL after the kill; B tries every third
	// of it.
	tctx, tcancel := context.WithTimeout(ctx, replicaTTL+replicaTTL/3+2*time.Second)
	err := poll(tctx, b.leading)
	tcancel()
	if err != nil {
		t.Fatalf("replica B did not take the lease within %v of the kill; log tail:\n%s", replicaTTL, tail(b.logs.String(), 2000))
	}
	t.Logf("replica B took the lease %v after the kill", time.Since(killed).Round(time.Millisecond))
	if err := poll(ctx, func() bool {
		return r.outcomeDMs()[email] >= 1 && r.count("POST /users/{id}/sponsors") >= 1
	}); err != nil {
		t.Fatalf("replica B did not finish the invitation: %v; log tail:\n%s", err, tail(b.logs.String(), 3000))
	}
	r.stop(ctx, b)
	r.hub.drain()
	if n := r.count("POST /invitations"); n != 1 {
		t.Errorf("%d POST /invitations, want 1", n)
	}
	if n := r.count("POST /groups/{id}/members"); n != 2 { // A's, held, and B's
		t.Errorf("%d group requests, want 2 (the one held when A died, B's)", n)
	}
	if n := r.outcomeDMs()[email]; n != 1 {
		t.Errorf("%d outcome DMs, want 1", n)
	}
	if !slices.Contains(r.tenant.GroupMembers(emuPortal), guestID(t, r, email)) {
		t.Errorf("%s is not in the portal group", email)
	}
}

func guestID(t *testing.T, r *replicaRig, email string) string {
	t.Helper()
	for _, u := range r.tenant.Users() {
		if strings.EqualFold(u.Mail, email) {
			return u.ID
		}
	}
	t.Fatalf("no guest %s in the tenant", email)
	return ""
}

package main

// Crash test: `invitebot serve` runs as a child process (this test binary,
// re-executed) against the emulators, which run in the test process behind
// an interceptor. The test SIGKILLs the child at randomised points of the
// invitation flow, restarts it on the same bbolt file, and checks what a
// crash must never break: one guest per address, every invitation finishes,
// the inviter is told once (also when the crash follows the DM but precedes
// its record), redeem links stay in the DM, and the audit log has every step.

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
	"github.com/invitebot/invitebot/internal/slackfake"
	"github.com/invitebot/invitebot/internal/store"
)

// crashChildEnv makes the test binary run `invitebot serve` instead of the
// tests (see TestMain).
const crashChildEnv = "INVITEBOT_CRASH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, []string{"serve"}, os.Getenv, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "invitebot:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m))
}

// trap is a kill point: the n-th request with key after arming. Before:
// the request is held and never reaches the emulator. After: the emulator
// performs it, and its answer is withheld (the lost-answer case).
type trap struct {
	key   string
	n     int
	after bool
	seen  int
	fired chan struct{}
	// release, if set, makes the trap a hold: the request waits until
	// release is closed, then goes through (the child is not killed).
	release chan struct{}
}

// String names the kill point without the occurrence, for the tally.
func (tr *trap) String() string {
	if tr.after {
		return tr.key + " (answer lost)"
	}
	return tr.key + " (held)"
}

// hub is the interceptors' shared state: the armed trap and the requests
// in flight to the emulators.
type hub struct {
	mu       sync.Mutex
	idle     *sync.Cond
	trap     *trap
	inflight int
	conns    int      // the child's open connections to the emulators
	keys     []string // every request's key, in arrival order
	stop     chan struct{}
}

func newHub() *hub {
	h := &hub{stop: make(chan struct{})}
	h.idle = sync.NewCond(&h.mu)
	return h
}

func (h *hub) arm(tr *trap) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tr.fired = make(chan struct{})
	h.trap = tr
}

// disarm removes the trap; it reports whether a request took it (then
// its fired channel is closed, or about to be).
func (h *hub) disarm() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	taken := h.trap == nil
	h.trap = nil
	return taken
}

// enter records a request and returns the trap it fires, if any.
func (h *hub) enter(key string) *trap {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inflight++
	h.keys = append(h.keys, key)
	tr := h.trap
	if tr == nil || tr.key != key {
		return nil
	}
	if tr.seen++; tr.seen < tr.n {
		return nil
	}
	h.trap = nil
	return tr
}

func (h *hub) leave() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inflight--
	h.idle.Broadcast()
}

// connState counts the connections to an emulator.
func (h *hub) connState(_ net.Conn, st http.ConnState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch st {
	case http.StateNew:
		h.conns++
	case http.StateClosed, http.StateHijacked:
		h.conns--
		h.idle.Broadcast()
	}
}

// serve starts an emulator's server behind an interceptor.
func (h *hub) serve(t *testing.T, key func(*http.Request) string, next http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(&interceptor{hub: h, key: key, next: next})
	srv.Config.ConnState = h.connState
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// drain waits, for a dead child, until its connections to the emulators
// are closed and no request is in flight: a request it sent just before
// dying is still read and performed, and what the emulators recorded is
// final only after that.
func (h *hub) drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.inflight > 0 || h.conns > 0 {
		h.idle.Wait()
	}
}

func (h *hub) keysSince(i int) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.keys[min(i, len(h.keys)):])
}

func (h *hub) nkeys() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.keys)
}

// interceptor fronts an emulator.
type interceptor struct {
	hub  *hub
	key  func(*http.Request) string
	next http.Handler
}

func (ic *interceptor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tr := ic.hub.enter(ic.key(r))
	defer ic.hub.leave()
	if tr == nil {
		ic.next.ServeHTTP(w, r)
		return
	}
	if tr.release != nil {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		close(tr.fired)
		select {
		case <-tr.release:
			ic.next.ServeHTTP(w, r)
		case <-r.Context().Done():
		case <-ic.hub.stop:
		}
		return
	}
	if tr.after {
		ic.next.ServeHTTP(httptest.NewRecorder(), r)
	}
	// Read the body to its end: only then does net/http notice the
	// connection closing (and cancel r's context) when the child dies.
	_, _ = io.Copy(io.Discard, r.Body)
	close(tr.fired)
	select { // the child is killed: no answer ever reaches it
	case <-r.Context().Done():
	case <-ic.hub.stop:
	}
}

// graphKey names a Graph request by route.
func graphKey(r *http.Request) string {
	p := strings.TrimPrefix(r.URL.Path, "/v1.0")
	seg := strings.Split(strings.Trim(p, "/"), "/")
	switch {
	case seg[0] == "users" && len(seg) == 1:
		return r.Method + " /users"
	case seg[0] == "users" && len(seg) == 2:
		return r.Method + " /users/{id}"
	case seg[0] == "users":
		return r.Method + " /users/{id}/" + seg[2]
	case seg[0] == "groups":
		return r.Method + " /groups/{id}/members"
	}
	return r.Method + " " + p
}

// slackKey names a Slack Web API request by method.
func slackKey(r *http.Request) string { return strings.Trim(r.URL.Path, "/") }

// forward proxies to the Slack fake. The upstream call completes even if
// the child dies meanwhile, so the fake's record is final once drained.
func forward(base string) http.Handler {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method,
			base+strings.TrimPrefix(r.URL.RequestURI(), "/"), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := c.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(b)
	})
}

// crashRig is the emulators, the interceptors and the child process.
type crashRig struct {
	t      *testing.T
	hub    *hub
	tenant *graphfake.Tenant
	slack  *slackfake.Server
	player *slackfake.Player
	sts    *graphfake.STS
	env    []string
	db     string
	addr   string
	logs   *logBuffer

	cmd  *exec.Cmd
	done chan struct{}
}

func newCrashRig(t *testing.T) *crashRig {
	t.Helper()
	dir := t.TempDir()
	r := &crashRig{t: t, hub: newHub(), logs: &logBuffer{}, db: filepath.Join(dir, "invitebot.db")}
	sts := graphfake.NewSTS(graphfake.STSConfig{TenantID: emuTenant, ClientID: emuClient, ClientSecret: emuSecret})
	t.Cleanup(sts.Close)
	r.sts = sts
	r.tenant = graphfake.NewTenant(graphfake.TenantConfig{ID: emuTenant, VerifiedDomains: []string{"contoso.com"}, ValidToken: sts.ValidToken})
	r.tenant.AddGroupWithID(emuPortal, "Partner portal users")
	// Ann's Slack email maps to an internal account: the sponsor steps run.
	r.tenant.AddUser(graphfake.User{DisplayName: "Ann Inviter", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com", UserType: "Member", AccountEnabled: true})
	graph := r.hub.serve(t, graphKey, r.tenant)
	r.slack = slackfake.New()
	t.Cleanup(r.slack.Close)
	r.slack.AddUser(ann, "ann@contoso.com", "Ann Inviter")
	slackProxy := r.hub.serve(t, slackKey, forward(r.slack.APIURL()))
	t.Cleanup(func() { close(r.hub.stop) }) // runs first: frees held requests

	certFile := filepath.Join(dir, "sts.pem")
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(certFile, sts.CertificatePEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(policy, []byte("admins: ["+emuAdmin+"]\ngroups:\n  - name: Partner portal users\n    id: "+emuPortal+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.addr = freeAddr(t)
	r.env = []string{
		crashChildEnv + "=1",
		"SLACK_BOT_TOKEN=xoxb-emulated", "SLACK_SIGNING_SECRET=" + emuSigning, "SLACK_API_URL=" + slackProxy.URL + "/",
		"AZURE_TENANT_ID=" + emuTenant, "AZURE_CLIENT_ID=" + emuClient, "AZURE_CLIENT_SECRET=" + emuSecret,
		"AZURE_AUTHORITY_HOST=" + sts.URL, "GRAPH_BASE_URL=" + graph.URL + "/v1.0",
		"INVITEBOT_DB=" + r.db, "INVITEBOT_ADDR=" + r.addr, "INVITEBOT_CONFIG=" + policy,
		"LOG_FORMAT=json", "SSL_CERT_FILE=" + certFile,
	}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GORACE", "GOCOVERDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			r.env = append(r.env, k+"="+v)
		}
	}
	r.player = &slackfake.Player{Secret: emuSigning, Team: emuTeam, Slack: r.slack, BotURL: "http://" + r.addr,
		Client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}}
	t.Cleanup(func() {
		if r.cmd != nil {
			_ = r.cmd.Process.Kill()
			<-r.done
		}
		logs := r.logs.String()
		for _, s := range []string{emuSecret, emuSigning, "xoxb-emulated", "redeem?", "ticket"} {
			if strings.Contains(logs, s) {
				t.Errorf("child log contains %q", s)
			}
		}
	})
	return r
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// child starts `invitebot serve` with env (plus extra) and returns it and a
// channel closed when it has exited.
func (r *crashRig) child(out io.Writer, extra ...string) (*exec.Cmd, chan struct{}) {
	r.t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(slices.Clone(r.env), extra...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // no orphans if the test binary dies
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	return cmd, done
}

func (r *crashRig) start() {
	r.t.Helper()
	if r.cmd != nil {
		r.t.Fatal("child already running")
	}
	r.cmd, r.done = r.child(r.logs)
}

func (r *crashRig) running() bool { return r.cmd != nil }

// kill SIGKILLs the child and waits until it is gone and the emulators
// have finished whatever it had asked them.
func (r *crashRig) kill() {
	r.t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		r.t.Fatal(err)
	}
	<-r.done
	r.cmd = nil
	r.hub.drain()
}

// stop ends the child with SIGTERM (graceful shutdown).
func (r *crashRig) stop(ctx context.Context) {
	r.t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		r.t.Fatalf("child did not stop on SIGTERM: %v", ctx.Err())
	}
	if st := r.cmd.ProcessState; !st.Success() {
		r.t.Errorf("child exited with %v; log tail:\n%s", st, tail(r.logs.String(), 2000))
	}
	r.cmd = nil
	r.hub.drain()
}

// healthy waits for GET /healthz.
func (r *crashRig) healthy(ctx context.Context) {
	r.t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	for {
		resp, err := c.Get("http://" + r.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-r.done:
			r.t.Fatalf("child exited before it was healthy; log tail:\n%s", tail(r.logs.String(), 2000))
		case <-ctx.Done():
			r.t.Fatalf("child not healthy: %v", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// records reads the store (the child must be dead): every invitation by
// email, after checking the file's integrity.
func (r *crashRig) records(ctx context.Context) (map[string]*flows.Invitation, []flows.Event) {
	r.t.Helper()
	db, err := store.Open(r.db, store.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		r.t.Fatalf("store damaged: %v", err)
	}
	invs, err := db.Invitations(ctx, flows.InvitationFilter{})
	if err != nil {
		r.t.Fatal(err)
	}
	audit, err := db.AuditLog(ctx, time.Time{})
	if err != nil {
		r.t.Fatal(err)
	}
	return byEmail(r.t, invs), audit
}

// byEmail maps invs by guest address; an address with two records is an
// error.
func byEmail(t *testing.T, invs []*flows.Invitation) map[string]*flows.Invitation {
	t.Helper()
	out := map[string]*flows.Invitation{}
	for _, inv := range invs {
		if out[inv.Request.Email] != nil {
			t.Errorf("two invitation records for %s", inv.Request.Email)
		}
		out[inv.Request.Email] = inv
	}
	return out
}

// outcomeDMs counts the outcome DMs to Ann per guest address.
func (r *crashRig) outcomeDMs() map[string]int {
	out := map[string]int{}
	for _, m := range r.slack.Messages() {
		if m.Channel != slackfake.DMChannel(ann) || m.Ephemeral {
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

// poll waits until cond holds.
func poll(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// flowCall is one emulator call of the invitation flow, with the
// invitation's recorded state while it is made.
type flowCall struct {
	key   string
	state flows.State
}

// flowCalls is the emulator traffic of one invitation (slack_link delivery,
// one group, no attributes, an inviter with an internal account), as an
// uninterrupted run logs it. The dialog's intermediate states are
// coalesced (none for a flow this fast: see bot/progress.go); the Slack
// Connect check (users.lookupByEmail) runs in the background after the DM,
// and the Home tab is re-published only for a tab opened before, at most
// once a minute: neither is tied to a state.
var flowCalls = []flowCall{
	{"GET /organization", flows.StateChecking}, // verified domains, re-read
	{"GET /users", flows.StateChecking},        // an existing user?
	{"POST /invitations", flows.StateInviting},
	{"POST /groups/{id}/members", flows.StateAttributesSet},
	{"users.info", flows.StateProvisioned},       // the inviter's name for the text (cached: the sponsor reuses it)
	{"chat.postMessage", flows.StateProvisioned}, // the outcome DM, to the user ID
	{"views.update", flows.StateProvisioned},     // the final dialog, after the DM
	{"GET /users", flows.StateNotified},          // the sponsor's account, after the DM
	{"POST /users/{id}/sponsors", flows.StateNotified},
}

// pickTrap draws a kill point ahead of an invitation in state: a state
// among the ones still ahead (among those not yet hit, if any), then one
// of its calls.
func pickTrap(rng *rand.Rand, state flows.State, hit map[flows.State]bool) *trap {
	first := slices.IndexFunc(flowCalls, func(c flowCall) bool { return c.state == state })
	if first < 0 {
		first = 0 // requested: the flow starts with checking
	}
	ahead := flowCalls[first:]
	var states []flows.State
	for _, c := range ahead {
		if !slices.Contains(states, c.state) {
			states = append(states, c.state)
		}
	}
	if missing := slices.DeleteFunc(slices.Clone(states), func(s flows.State) bool { return hit[s] }); len(missing) > 0 {
		states = missing
	}
	target := states[rng.IntN(len(states))]
	var at []int
	for j, c := range ahead {
		if c.state == target {
			at = append(at, j)
		}
	}
	j := at[rng.IntN(len(at))]
	tr := &trap{key: ahead[j].key, after: rng.IntN(2) == 0}
	for _, c := range ahead[:j+1] {
		if c.key == tr.key {
			tr.n++
		}
	}
	return tr
}

// killPoint is one SIGKILL: how it was chosen, and the invitation's state
// read back from the store afterwards ("" if it had no record yet).
type killPoint struct {
	email string
	how   string
	state flows.State
	at    time.Duration // since the test began
}

// crashRNG returns the random source of a crash test: seeded from the
// clock, or from INVITEBOT_CRASH_SEED to replay a run.
func crashRNG(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("INVITEBOT_CRASH_SEED"); s != "" {
		if _, err := fmt.Sscan(s, &seed); err != nil {
			t.Fatalf("INVITEBOT_CRASH_SEED: %v", err)
		}
	}
	t.Logf("seed %d (re-run with INVITEBOT_CRASH_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func TestCrashRestartInvariants(t *testing.T) {
	const (
		minKills       = 60
		minInvitations = 8
		maxInvitations = 30
	)
	rng := crashRNG(t)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	r := newCrashRig(t)

	var (
		kills      []killPoint
		states     = map[string]flows.State{} // last state read back, per address
		window     = map[string]int{}         // crashes between the outcome DM and its record
		dmsAtStart = map[string]int{}
		hit        = map[flows.State]bool{} // states kills have landed in
		emails     []string
		began      = time.Now()
		ackIn      time.Duration // the slowest submission's acknowledgement: the window for kills during one
	)
	start := func() {
		dmsAtStart = r.outcomeDMs()
		r.start()
	}
	// crash SIGKILLs the child and reads back where each invitation was.
	crash := func(email, how string) {
		r.kill()
		dms := r.outcomeDMs()
		recs, _ := r.records(ctx)
		for e, inv := range recs {
			states[e] = inv.State
			// The DM is sent before the record says notified: a crash in
			// between makes the restarted bot look for it in the DM.
			if inv.State == flows.StateProvisioned && dms[e] > dmsAtStart[e] {
				window[e]++
			}
		}
		kills = append(kills, killPoint{email: email, how: how, state: states[email], at: time.Since(began)})
		hit[states[email]] = true
	}
	// finished reports whether email's outcome is known: read back as
	// final, or its DM went out (since the last start, or before the crash
	// that left it provisioned).
	finished := func(email string) bool {
		dms := r.outcomeDMs()[email]
		return states[email].Terminal() || dms > dmsAtStart[email] ||
			// The DM went out just before a crash: the restarted bot finds
			// it and records it without a second one (settled then waits
			// for the record).
			(states[email] == flows.StateProvisioned && dms > 0)
	}
	// settled waits until the running bot's Home tab shows email's
	// invitation as final (notified, so pending acceptance; or failed): its
	// record says so.
	settled := func(email string) {
		t.Helper()
		row := "(" + email + ")\n"
		for {
			n := len(r.slack.Calls("views.publish"))
			if _, err := r.player.OpenHome(ctx, ann); err != nil {
				t.Fatalf("open Home: %v", err)
			}
			if err := poll(ctx, func() bool { return len(r.slack.Calls("views.publish")) > n }); err != nil {
				t.Fatalf("Home not published: %v", err)
			}
			v, _ := r.slack.HomeView(ann)
			home := renderView(v)
			if strings.Contains(home, row+"Pending for") || strings.Contains(home, row+"Failed") {
				return
			}
		}
	}
	submit := func(view string, i int) (slackfake.Response, error) {
		return r.player.Submit(ctx, ann, view, inviteValues(emails[i], fmt.Sprintf("Guest %d", i), "slack_link", emuPortal))
	}

	// The states every run must have crashed in (requested is left to
	// chance: only a crash during the submission can land there; so are
	// invited and groups_added: without attributes no call is made in
	// either, the dialog's progress being coalesced and the sponsor's
	// calls coming after the DM).
	mustHit := []flows.State{flows.StateChecking, flows.StateInviting, flows.StateAttributesSet,
		flows.StateProvisioned, flows.StateNotified}
	allHit := func() bool { return !slices.ContainsFunc(mustHit, func(s flows.State) bool { return !hit[s] }) }
	for i := 0; i < maxInvitations && (len(kills) < minKills || i < minInvitations || !allHit()); i++ {
		email := fmt.Sprintf("guest%d@fabrikam.com", i)
		emails = append(emails, email)
		if !r.running() {
			start()
		}
		r.healthy(ctx)
		resp, view, err := r.player.Command(ctx, ann, bot.Command, email)
		if err != nil || resp.Status != http.StatusOK || view == "" {
			t.Fatalf("command: %v %d %s; log tail:\n%s", err, resp.Status, resp.Body, tail(r.logs.String(), 3000))
		}
		budget := 4 + rng.IntN(5)
		if i == 0 {
			budget = 0 // the first runs uninterrupted: its traffic is logged
		}
		mark := r.hub.nkeys()
		if budget > 0 && rng.IntN(3) == 0 {
			// While the submission is handled: no record yet, requested
			// or checking.
			answered := make(chan error, 1)
			go func() {
				_, err := submit(view, i)
				answered <- err
			}()
			time.Sleep(time.Duration(rng.Int64N(int64(ackIn) + 1)))
			crash(email, "submission")
			<-answered // answered or cut off
			budget--
		}
		if states[email] == "" { // not recorded: the inviter submits (again)
			if !r.running() {
				start()
				r.healthy(ctx)
			}
			sent := time.Now()
			resp, err = submit(view, i)
			ackIn = max(ackIn, time.Since(sent))
			if err != nil || resp.Status != http.StatusOK || resp.JSON()["response_action"] != "update" {
				t.Fatalf("submit: %v %d %s", err, resp.Status, resp.Body)
			}
			states[email] = flows.StateRequested
		}
		for late := 0; budget > 0 && !finished(email); budget-- {
			if states[email] == flows.StateProvisioned {
				if late++; late > 2 {
					break // leave the rest of the budget for after the outcome
				}
			}
			var tr *trap
			if !r.running() && rng.IntN(6) == 0 {
				tr = &trap{key: "GET /organization", n: 1, after: rng.IntN(2) == 0} // start-up, before resuming
			} else {
				tr = pickTrap(rng, states[email], hit)
			}
			r.hub.arm(tr)
			if !r.running() {
				start()
			}
			err := poll(ctx, func() bool { // fired, or the flow ended first
				select {
				case <-tr.fired:
					return true
				default:
					return finished(email)
				}
			})
			if err != nil {
				t.Fatalf("waiting for %s: %v; log tail:\n%s", tr, err, tail(r.logs.String(), 3000))
			}
			if r.hub.disarm() { // it fired, perhaps just after the flow ended
				<-tr.fired
				crash(email, tr.String())
			}
		}
		if i == 0 {
			if !r.running() {
				start()
			}
			if err := poll(ctx, func() bool { return finished(email) }); err != nil {
				t.Fatal(err)
			}
			r.healthy(ctx)
			settled(email)
			t.Logf("uninterrupted flow's emulator traffic: %q", r.hub.keysSince(mark))
			continue
		}
		if budget == 0 && !hit[flows.StateNotified] {
			budget = 1
		}
		if budget > 0 {
			budget = min(budget, 2)
			// Notified: crash with the bot idle, then in the restarted
			// tracker's first cycle (a JSON batch of pending invitations).
			if !r.running() {
				start()
			}
			r.healthy(ctx)
			if err := poll(ctx, func() bool { return finished(email) }); err != nil {
				t.Fatal(err)
			}
			settled(email)
			crash(email, "idle")
			if budget > 1 {
				tr := &trap{key: "POST /$batch", n: 1, after: rng.IntN(2) == 0}
				r.hub.arm(tr)
				start()
				select {
				case <-tr.fired:
					crash(email, tr.String())
				case <-ctx.Done():
					t.Fatalf("no tracking cycle after a restart: %v", ctx.Err())
				}
			}
		}
	}

	// The last restart: everything must finish.
	if !r.running() {
		start()
	}
	r.healthy(ctx)
	err := poll(ctx, func() bool {
		for _, e := range emails {
			if !finished(e) {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("invitations did not finish: %v; log tail:\n%s", err, tail(r.logs.String(), 3000))
	}
	for _, e := range emails {
		settled(e)
	}
	r.stop(ctx)
	recs, audit := r.records(ctx)
	t.Logf("%d invitations, %d kills, %s", len(emails), len(kills), time.Since(began).Round(time.Millisecond))

	// Where the kills landed.
	byState := map[flows.State]int{}
	byHow := map[string]int{}
	for _, k := range kills {
		byState[cmp.Or(k.state, "(no record yet)")]++
		byHow[k.how]++
	}
	t.Logf("kills by state read back: %v", byState)
	t.Logf("kills by emulator call: %v", byHow)
	if len(kills) < minKills {
		t.Errorf("%d kills, want at least %d", len(kills), minKills)
	}
	for _, s := range mustHit {
		if byState[s] == 0 {
			t.Errorf("no kill in state %s", s)
		}
	}

	dms := r.outcomeDMs()
	var repeats int
	for _, email := range emails {
		inv := recs[email]
		if inv == nil {
			t.Errorf("%s: no invitation record", email)
			continue
		}
		// Every record ends final: notified, or failed with a reason.
		switch {
		case inv.State == flows.StateNotified:
		case inv.State == flows.StateFailed && inv.Failure != nil && inv.Failure.Code != "":
			t.Logf("%s failed: %s", email, inv.Failure.Code)
		default:
			t.Errorf("%s: record ends %s (failure %+v)", email, inv.State, inv.Failure)
		}
		// Exactly one guest for the address.
		var guests []graphfake.User
		for _, u := range r.tenant.Users() {
			if strings.EqualFold(u.Mail, email) {
				guests = append(guests, u)
			}
		}
		if len(guests) != 1 {
			t.Errorf("%s: %d users in the tenant, want 1", email, len(guests))
		} else if inv.State == flows.StateNotified {
			if inv.ObjectID != guests[0].ID {
				t.Errorf("%s: record has object %s, tenant %s", email, inv.ObjectID, guests[0].ID)
			}
			if !slices.Contains(r.tenant.GroupMembers(emuPortal), guests[0].ID) {
				t.Errorf("%s: not in the group", email)
			}
		}
		// One outcome DM, also after crashes between the DM and the
		// record of it: the restarted bot finds the DM (by the notice ID
		// in its metadata) instead of sending it again.
		if dms[email] != 1 {
			t.Errorf("%s: %d outcome DMs, want 1 (%d crashes in the notify window)", email, dms[email], window[email])
		}
		repeats += window[email]
		// The audit log has every step, once.
		var actions []string
		for _, ev := range audit {
			if ev.InvitationID == inv.ID {
				actions = append(actions, ev.Action)
			}
		}
		// The sponsor follows the DM; the last stop may come before it
		// (then it is due, for the next start).
		want := []string{"requested", "checking directory", "no existing user", "invited", "no attributes to set",
			"added to group", "groups done", "provisioned", "inviter notified", "sponsor recorded"}
		if inv.SponsorDue {
			want = want[:len(want)-1]
		} else if inv.State == flows.StateNotified && inv.Sponsor == nil {
			t.Errorf("%s: notified, no sponsor recorded and none due", email)
		}
		if inv.State == flows.StateNotified && !slices.Equal(actions, want) {
			t.Errorf("%s: audit %q, want %q", email, actions, want)
		}
	}
	if t.Failed() {
		for i, k := range kills {
			t.Logf("kill %d at %s: %s, %s → %q", i+1, k.at.Round(time.Millisecond), k.email, k.how, k.state)
		}
		t.Logf("child log tail:\n%s", tail(r.logs.String(), 20000))
	}
	t.Logf("crashes between an outcome DM and its record (not repeated): %d", repeats)
	posts := r.tenant.Invitations()
	t.Logf("POST /invitations accepted: %d for %d addresses", len(posts), len(emails))

	// The redeem link is only ever in the inviter's DM.
	for _, m := range r.slack.Messages() {
		if (m.Channel != slackfake.DMChannel(ann) || m.Ephemeral) && strings.Contains(m.Text+string(m.Blocks), "redeem") {
			t.Errorf("redeem link posted to %s: %s", m.Channel, m.Text)
		}
	}
	for _, c := range append(r.slack.Calls("views.update"), r.slack.Calls("views.publish")...) {
		if raw := fmt.Sprint(c.JSON, c.Form); strings.Contains(raw, "login.microsoftonline.com/redeem") {
			t.Errorf("redeem link in %s", c.Method)
		}
	}
}

// A second invitebot on the same store fails at once, saying why.
func TestCrashSecondInstanceFailsFast(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	r := newCrashRig(t)
	r.start()
	r.healthy(ctx)
	var out logBuffer
	began := time.Now()
	cmd, done := r.child(&out, "INVITEBOT_ADDR="+freeAddr(t))
	select {
	case <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		t.Fatal("the second instance is still running")
	}
	took := time.Since(began)
	t.Logf("second instance exited after %s: %v", took.Round(time.Millisecond), cmd.ProcessState)
	if cmd.ProcessState.Success() {
		t.Errorf("second instance succeeded")
	}
	if !strings.Contains(out.String(), store.ErrLocked.Error()) {
		t.Errorf("second instance said %q, want %q", out.String(), store.ErrLocked.Error())
	}
	if took > 15*time.Second {
		t.Errorf("second instance took %s to fail", took)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal(ctx.Err())
	}
	r.stop(ctx)
}

package flows

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Service. Directory, Store and Notifier are required;
// every other field has a default.
type Config struct {
	Directory Directory
	Store     Store
	Notifier  Notifier
	Policy    Policy
	// People maps inviters to their email, for the Entra sponsor; nil: the
	// sponsor is recorded in the store only.
	People People
	// Observer is told what the Service does, for metrics; nil: nobody.
	Observer Observer
	// InviteAs says whose token POST /invitations uses; "" is InviteAsApp.
	// Delegation sends as the inviter; required unless InviteAs is app.
	InviteAs   InviteAs
	Delegation Delegation

	Logger *slog.Logger                               // nil: discard
	Now    func() time.Time                           // nil: time.Now
	Sleep  func(context.Context, time.Duration) error // nil: SleepContext
	NewID  func() string                              // nil: random "inv_…" IDs

	Transient   Backoff       // zero: DefaultTransient
	Replication Backoff       // zero: DefaultReplication
	CallTimeout time.Duration // per directory call; zero: 30s
	// PickTimeout is how long an unanswered "pick a match" dialog blocks a
	// new invitation for the same address; zero: 15 minutes.
	PickTimeout time.Duration
	// DomainRefresh is how often the verified domains are re-read; zero: 1h.
	DomainRefresh time.Duration

	// PollInterval is how often Start's tracker checks pending invitations
	// for acceptance; zero: 5 minutes; negative: no background tracking
	// (call Track).
	PollInterval time.Duration
	// RemindAfter is the age of a pending invitation at which the inviter
	// gets one reminder; zero: no reminders.
	RemindAfter time.Duration
	// MissingGrace is how long a guest must keep answering 404 before it
	// counts as deleted in Entra (replication delay); zero: 10 minutes.
	MissingGrace time.Duration
	// TrackConcurrency is how many JSON batches the tracker has in flight;
	// zero: 4.
	TrackConcurrency int
	// InviteLimit POSTs to /invitations per InviteWindow at most (Graph's
	// per-tenant limit, shared by every app); zero: 150 per 5 s. Leave room
	// if other apps invite into the same tenant.
	InviteLimit  int
	InviteWindow time.Duration
	// ScopedWriteWindow is how long attribute and sponsor writes that
	// Entra refuses with 403 are retried in the background (see Deferred);
	// zero: DefaultScopedWriteWindow; negative: a 403 is final at once.
	ScopedWriteWindow time.Duration
	// ScopedWriteBackoff spaces those retries (its Attempts is unused);
	// zero: DefaultScopedWriteBackoff.
	ScopedWriteBackoff Backoff

	// StopGrace is how long a Graph call or store write in flight may
	// outlive the stop of its run (Close, SIGTERM, a lost lease), so that
	// what Graph did is recorded rather than repeated by the resumed
	// invitation; zero: DefaultStopGrace; negative: calls are cut off.
	StopGrace time.Duration

	// Replica names this replica among several that share Store, which
	// must then also be a Leaser; "" (the default) when the process is
	// alone with its store. See replica.go: which replica runs an
	// invitation's work.
	Replica string
	// ReplicaTTL is how long a replica counts as alive after it last
	// renewed its liveness lease, and how often the leader adopts the
	// work of replicas that stopped; zero: DefaultLeaseTTL.
	ReplicaTTL time.Duration
}

// Service runs invitations. Submissions are validated synchronously; the
// Graph work runs in the background on the Service's own context, so a
// Slack acknowledgement never waits for it.
type Service struct {
	dir  Directory // holds the gate: interactive calls
	raw  Directory // the tracker's, after waiting at the gate
	gate gate
	// invites paces POST /invitations under Graph's per-tenant limit; the
	// wait is outside the call's timeout (a queue is not a slow Graph).
	invites *window
	// bulkDMs paces the DMs of bulk rows (redeem links) under Slack's
	// message rate: about one per second per channel, and users.lookupByEmail's
	// 50 per minute, which each such DM calls.
	bulkDMs *window
	store   Store
	note    Notifier
	people  People
	// inviteAs and delegation decide who sends POST /invitations (sender).
	inviteAs   InviteAs
	delegation Delegation
	// signIns is the store's sign-in records, if it keeps them: the
	// tracker deletes the expired ones (sweepSignIns).
	signIns SignInStore
	// sponsors caches inviters' Entra accounts (SponsorTTL).
	sponsors accounts
	log      *slog.Logger
	obs      Observer
	now      func() time.Time
	sleep    func(context.Context, time.Duration) error
	newID    func() string

	transient, replication   Backoff
	callTimeout, pickTimeout time.Duration
	domainRefresh            time.Duration
	pollInterval             time.Duration
	remindAfter              time.Duration
	missingGrace             time.Duration
	trackConcurrency         int
	scopedWindow             time.Duration
	scopedBackoff            Backoff
	locks                    map[string]*keyLock
	policy                   atomic.Pointer[Policy]
	domains                  atomic.Pointer[[]string]
	ctx                      context.Context
	cancel                   context.CancelFunc
	wg                       sync.WaitGroup
	mu                       sync.Mutex
	running                  map[string]bool
	again                    map[string]bool // keys asked to run again when their run ends
	idle                     chan struct{}   // closed when a run ends
	startOnce, refreshOnce   sync.Once

	// replica, leaser and replicaTTL: see Config.Replica. claims counts
	// the runs on this replica per claimed invitation; beating says
	// whether the liveness lease is held, firstBeat is closed once it was
	// first tried.
	grace      time.Duration // Config.StopGrace; 0: none
	replica    string
	leaser     Leaser
	sweeper    LeaseSweeper // the store's, if it is one (sweepLeases)
	replicaTTL time.Duration
	claims     map[string]int
	beating    atomic.Bool
	firstBeat  chan struct{}
	beatOnce   sync.Once
	beatCtx    context.Context // the liveness lease's: ends after the runs (Close)
	stopBeat   context.CancelFunc
}

// New returns a Service. Call Start to load the tenant's domains and resume
// unfinished invitations, and Close to stop.
func New(cfg Config) *Service {
	s := &Service{
		dir: cfg.Directory, store: cfg.Store, note: cfg.Notifier, people: cfg.People,
		inviteAs: cfg.InviteAs, delegation: cfg.Delegation,
		log: cfg.Logger, obs: cfg.Observer, now: cfg.Now, sleep: cfg.Sleep, newID: cfg.NewID,
		transient: cfg.Transient, replication: cfg.Replication,
		callTimeout: cfg.CallTimeout, pickTimeout: cfg.PickTimeout, domainRefresh: cfg.DomainRefresh,
		pollInterval: cfg.PollInterval, remindAfter: cfg.RemindAfter, missingGrace: cfg.MissingGrace,
		trackConcurrency: cfg.TrackConcurrency, scopedWindow: cfg.ScopedWriteWindow, scopedBackoff: cfg.ScopedWriteBackoff,
		running: map[string]bool{}, again: map[string]bool{}, locks: map[string]*keyLock{},
		replica: cfg.Replica, replicaTTL: cmp.Or(cfg.ReplicaTTL, DefaultLeaseTTL),
		claims: map[string]int{}, firstBeat: make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	switch {
	case cfg.StopGrace == 0:
		s.grace = DefaultStopGrace
	case cfg.StopGrace > 0:
		s.grace = cfg.StopGrace
	}
	s.store = observedStore{Store: cfg.Store, obs: s.obs, grace: s.grace}
	s.sweeper, _ = cfg.Store.(LeaseSweeper)
	if s.replica != "" {
		l, ok := cfg.Store.(Leaser)
		if !ok {
			panic("flows: Config.Replica is set but the store is not a Leaser")
		}
		s.leaser = l
		s.store = runnerStore{Store: s.store, replica: s.replica}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.sleep == nil {
		s.sleep = SleepContext
	}
	if s.newID == nil {
		s.newID = randomID
	}
	if s.transient.Attempts == 0 {
		s.transient = DefaultTransient
	}
	if s.replication.Attempts == 0 {
		s.replication = DefaultReplication
	}
	if s.callTimeout == 0 {
		s.callTimeout = 30 * time.Second
	}
	if s.pickTimeout == 0 {
		s.pickTimeout = 15 * time.Minute
	}
	if s.domainRefresh == 0 {
		s.domainRefresh = time.Hour
	}
	if s.pollInterval == 0 {
		s.pollInterval = 5 * time.Minute
	}
	if s.missingGrace == 0 {
		s.missingGrace = 10 * time.Minute
	}
	if s.scopedWindow == 0 {
		s.scopedWindow = DefaultScopedWriteWindow
	}
	if s.scopedBackoff.Base <= 0 {
		s.scopedBackoff = DefaultScopedWriteBackoff
	}
	if s.trackConcurrency <= 0 {
		s.trackConcurrency = 4
	}
	limit, per := cfg.InviteLimit, cfg.InviteWindow
	if limit <= 0 {
		limit = DefaultInviteLimit
	}
	if per <= 0 {
		per = DefaultInviteWindow
	}
	s.raw = cfg.Directory
	s.signIns, _ = cfg.Store.(SignInStore)
	s.invites = newWindow(limit, per)
	if w, ok := cfg.Store.(InviteWindow); ok {
		s.invites.shared = w
		s.invites.failed = func(err error) {
			s.log.Warn("shared invitation window: store failed; pacing in this replica only", "err", err)
		}
	}
	s.dir = interactive{Directory: cfg.Directory, g: &s.gate, invites: s.invites, now: s.now, grace: s.grace}
	s.bulkDMs = newWindow(1, BulkDMEvery)
	s.invites.waited = func(d time.Duration) { s.obs.Waited(WaitInviteLimit, d) }
	s.bulkDMs.waited = func(d time.Duration) { s.obs.Waited(WaitBulkDM, d) }
	p := cfg.Policy
	s.policy.Store(&p)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.beatCtx, s.stopBeat = context.WithCancel(context.Background())
	return s
}

// DefaultStopGrace is Config.StopGrace's default: within Kubernetes'
// default termination grace period (30 s) with the HTTP server's 10 s.
const DefaultStopGrace = 10 * time.Second

// BulkDMEvery is the pace of the DMs bulk rows send: at most one per
// BulkDMEvery, so 50 a minute.
const BulkDMEvery = 1200 * time.Millisecond

func randomID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "inv_" + hex.EncodeToString(b[:])
}

// Start is StartReplica and Background for a single process: it reads the
// tenant's verified domains, resumes every unfinished invitation and starts
// the domain refresher and the background work, which then runs until
// Close. It returns the number of invitations resumed. Replicas that share
// a store call StartReplica, and run Background under a Leader instead.
func (s *Service) Start(ctx context.Context) (int, error) {
	s.StartReplica(ctx)
	n, err := s.Resume(s.background(s.ctx))
	if err != nil {
		return 0, err
	}
	s.startOnce.Do(func() {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.trackLoop(s.background(s.ctx))
		}()
	})
	return n, nil
}

// StartReplica does what every replica does, whether or not it runs the
// background work: it reads the tenant's verified domains (a failure is
// logged and retried in the background: validation then re-checks before
// inviting) and starts their refresher, which runs until Close.
func (s *Service) StartReplica(ctx context.Context) {
	if s.replica != "" { // alive before it claims any work
		s.startBeat()
		select {
		case <-s.firstBeat:
		case <-ctx.Done():
		}
	}
	if err := s.RefreshDomains(ctx); err != nil {
		s.log.Warn("verified domains not loaded; will retry", "err", err)
	}
	s.refreshOnce.Do(func() {
		s.wg.Add(1)
		go s.refreshLoop()
	})
}

// Background runs the work exactly one replica must do, until ctx is done
// (or Close): it resumes every unfinished invitation (those of a replica
// that died too), then runs the acceptance tracker, whose cycles deliver
// outboxes, resume interrupted lifecycle actions, expire approvals and
// guests' access, and send reminders. Invitations, actions and outboxes it
// starts run on ctx: they stop when it ends (the lease was lost), with
// their state recorded for the replica that takes over. ctx is normally
// fenced (WithFence) by a Leader.
func (s *Service) Background(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	ctx = s.background(ctx)
	n, err := s.Resume(ctx)
	if err != nil {
		return err
	}
	s.log.Info("resumed unfinished invitations", "count", n)
	adopting := make(chan struct{})
	go func() {
		defer close(adopting)
		s.adoptLoop(ctx)
	}()
	s.trackLoop(ctx)
	<-adopting
	s.waitRuns(ctx)
	return nil
}

// Stop asks the background work to stop and returns: every run stops
// before its next step (a Graph call or store write in flight finishes
// within Config.StopGrace and is recorded), and no new run starts.
func (s *Service) Stop() { s.cancel() }

// Close stops background work and waits for it. Unfinished invitations keep
// their last recorded state and are resumed by the next Start (or, with
// replicas, by the leader: this replica's liveness lease is released only
// once its runs have ended, so none is adopted while it still runs).
func (s *Service) Close() {
	s.cancel()
	s.Wait()
	s.stopBeat()
	s.wg.Wait()
}

// Policy returns the policy in force.
func (s *Service) Policy() Policy { return *s.policy.Load() }

// SetPolicy replaces the policy; in-flight invitations are not affected.
func (s *Service) SetPolicy(p Policy) { s.policy.Store(&p) }

// Domains returns the tenant's verified domains, or nil if not yet known.
func (s *Service) Domains() []string {
	if d := s.domains.Load(); d != nil {
		return *d
	}
	return nil
}

// RefreshDomains re-reads the tenant's verified domains. Each failed read
// that is retried is logged as it fails, with the wait before the next.
func (s *Service) RefreshDomains(ctx context.Context) error {
	var got []string
	var last error
	logRetry := func(wait time.Duration) {
		s.log.Warn("read verified domains failed; retrying", "err", last, "retry_in", wait)
	}
	err := s.retryDirectory(ctx, false, logRetry, func(ctx context.Context) error {
		var err error
		got, err = s.dir.VerifiedDomains(ctx)
		last = err
		return err
	})
	if err != nil {
		return fmt.Errorf("read verified domains: %w", err)
	}
	s.domains.Store(&got)
	return nil
}

func (s *Service) refreshLoop() {
	defer s.wg.Done()
	every := s.domainRefresh
	if s.Domains() == nil {
		every = min(every, time.Minute)
	}
	for SleepContext(s.ctx, every) == nil { // real time: not the retry clock
		if err := s.RefreshDomains(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("refresh verified domains", "err", err)
			continue
		}
		every = s.domainRefresh
	}
}

// Submit validates an inviter's request and, if it is valid, records it and
// starts the invitation in the background. It returns FieldErrors for bad
// input (nothing is recorded then). A re-delivered submission of the same
// Slack view returns the invitation it started the first time.
//
// The policy decides first: who may invite at all, the partner-domain
// rules (deny is answered next to the email field), the domain's defaults,
// and whether an approver must decide (then a justification is required,
// and the invitation waits in awaiting_approval).
func (s *Service) Submit(ctx context.Context, viewID string, who Inviter, r Request) (*Invitation, error) {
	return s.submit(ctx, Origin{Kind: OriginDialog, Key: viewID}, who, r)
}

// submit is Submit from any origin: the dialog, a bulk file's row, a
// workflow step.
func (s *Service) submit(ctx context.Context, o Origin, who Inviter, r Request) (*Invitation, error) {
	p := s.Policy()
	rule := p.Domains.Rule(Domain(strings.TrimSpace(r.Email)))
	r = p.WithDomainDefaults(r).Normalize(p)
	r.Justification = strings.TrimSpace(r.Justification)
	memberOK := p.IsAdmin(who.UserID) || (rule != nil && rule.UserType == UserTypeMember)
	if errs := Validate(r, memberOK, p, s.Domains()); errs != nil {
		return nil, errs
	}
	d := p.Decide(r, who.UserID)
	switch {
	case d.Denied != "":
		return nil, FieldErrors{FieldEmail: d.Denied}
	case d.NeedsApproval() && r.Justification == "":
		return nil, FieldErrors{FieldJustification: "This invitation needs an approver's OK: say why you need this guest."}
	}
	detail := fmt.Sprintf("type=%s delivery=%s groups=%d", r.UserType, r.Delivery, len(r.Groups)) + o.detail()
	return s.create(ctx, o, who, r, "requested", detail, func(inv *Invitation) {
		if d.NeedsApproval() {
			s.requestApproval(inv, d)
		}
	})
}

// create records a new, validated invitation and starts it.
func (s *Service) create(ctx context.Context, o Origin, who Inviter, r Request, action, detail string, prep func(*Invitation)) (*Invitation, error) {
	now := s.now()
	inv := &Invitation{
		ID: s.newID(), Origin: o, Inviter: who, Request: r, Runner: s.replica,
		State: StateRequested, CreatedAt: now, UpdatedAt: now,
	}
	inv.History = []Event{s.event(inv, who.UserID, action, detail)}
	if prep != nil {
		prep(inv)
	}
	got, err := s.store.CreateInvitation(ctx, inv)
	if errors.Is(err, ErrInFlight) && got.State == StateAwaitingPick && now.Sub(got.UpdatedAt) > s.pickTimeout {
		// An abandoned pick dialog must not block the address forever.
		if err := s.Cancel(ctx, got.ID, got.Inviter); err != nil && !errors.Is(err, ErrWrongState) {
			return nil, fmt.Errorf("submit: %w", err)
		}
		got, err = s.store.CreateInvitation(ctx, inv)
	}
	switch {
	case errors.Is(err, ErrDuplicate):
		// The run that recorded it carries it on (or, if its process died,
		// the background work resumes it): a second run, on another replica
		// sharing the store, would repeat its Graph writes.
		s.log.InfoContext(ctx, "duplicate submission", "invitation", got)
		return got, nil
	case errors.Is(err, ErrInFlight):
		return nil, FieldErrors{FieldEmail: fmt.Sprintf(
			"An invitation for this address is already in progress (started %s ago).", age(now.Sub(got.CreatedAt)))}
	case err != nil:
		return nil, fmt.Errorf("submit: %w", err)
	}
	s.log.InfoContext(ctx, "invitation requested", "invitation", got)
	if got.State == StateAwaitingApproval {
		s.flushLater(ctx, got.ID)
		return got, nil
	}
	s.start(ctx, got.ID)
	return got, nil
}

// Pick records the inviter's choice among the matches shown to them:
// objectID of one of them, or "" to invite the address as a new guest.
// It returns ErrNotAuthorized if who is not the inviter and ErrWrongState if
// the invitation no longer waits for a pick (e.g. a double click).
func (s *Service) Pick(ctx context.Context, id string, who Inviter, objectID string) (*Invitation, error) {
	inv, err := s.store.UpdateInvitation(ctx, id, func(inv *Invitation) error {
		if inv.Inviter.UserID != who.UserID {
			return ErrNotAuthorized
		}
		if inv.State != StateAwaitingPick {
			return ErrWrongState
		}
		if objectID == "" {
			s.setState(inv, StateInviting, who.UserID, "chose to invite as new", "")
			return nil
		}
		i := slices.IndexFunc(inv.Matches, func(u DirectoryUser) bool { return u.ID == objectID })
		if i < 0 {
			return fmt.Errorf("pick %s: %w", objectID, ErrNotFound)
		}
		inv.ObjectID, inv.Picked = objectID, true
		// An existing account is tracked only if its invitation is pending.
		inv.Tracking.External = cmp.Or(inv.Matches[i].ExternalUserState, TrackNone)
		s.setState(inv, StateInvited, who.UserID, "picked existing user", objectID)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.start(ctx, id)
	return inv, nil
}

// Cancel ends an invitation that waits for the inviter's pick.
func (s *Service) Cancel(ctx context.Context, id string, who Inviter) error {
	_, err := s.store.UpdateInvitation(ctx, id, func(inv *Invitation) error {
		if inv.Inviter.UserID != who.UserID {
			return ErrNotAuthorized
		}
		if inv.State != StateAwaitingPick {
			return ErrWrongState
		}
		inv.Failure = &Failure{Code: FailCancelled, Step: inv.State}
		s.setState(inv, StateFailed, who.UserID, "cancelled", "")
		return nil
	})
	return err
}

// Invitation returns the stored invitation.
func (s *Service) Invitation(ctx context.Context, id string) (*Invitation, error) {
	return s.store.Invitation(ctx, id)
}

// Resume starts every invitation that is neither finished nor waiting for a
// person, and those waiting for an inviter's sign-in who has connected
// since. It is safe to call while invitations run: each runs once.
func (s *Service) Resume(ctx context.Context) (int, error) {
	s.resumeSignIns(ctx)
	return s.resumeRuns(ctx)
}

// resumeRuns starts every unfinished invitation that no live replica runs
// (with replicas; see replica.go), and those told with their sponsor still
// to record.
func (s *Service) resumeRuns(ctx context.Context) (int, error) {
	invs, err := s.store.Invitations(ctx, InvitationFilter{Unfinished: true})
	if err != nil {
		return 0, fmt.Errorf("resume: %w", err)
	}
	// Told, with the sponsor still to record (a stop came between the DM
	// and the sponsor): the sponsor step resumes.
	due, err := s.store.Invitations(ctx, InvitationFilter{SponsorDue: true})
	invs = append(invs, slices.DeleteFunc(due, func(inv *Invitation) bool { return !inv.State.Terminal() })...)
	if err != nil {
		return 0, fmt.Errorf("resume: %w", err)
	}
	alive := map[string]bool{}
	invs = slices.DeleteFunc(invs, func(inv *Invitation) bool {
		return inv.State.Waiting() || s.runningHere(inv.ID) || !s.runnable(ctx, inv, alive)
	})
	for _, inv := range invs {
		s.log.InfoContext(ctx, "resuming invitation", "invitation", inv)
		s.start(ctx, inv.ID)
	}
	return len(invs), nil
}

// Wait blocks until no invitation runs in the background. Tests and the
// demo use it; the bot never needs to.
func (s *Service) Wait() {
	for {
		s.mu.Lock()
		if len(s.running) == 0 {
			s.mu.Unlock()
			return
		}
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle := s.idle
		s.mu.Unlock()
		<-idle
	}
}

// start runs invitation id in the background unless it already runs.
func (s *Service) start(ctx context.Context, id string) {
	s.goOnce(ctx, "", id, func(ctx context.Context) { s.run(ctx, id) })
}

// runningHere reports whether invitation id's steps run in this process.
func (s *Service) runningHere(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[id]
}

// runScope is the background work's scope (Background): the runs it
// starts live on its context, and it waits for them before it returns.
type runScope struct {
	ctx context.Context
	wg  sync.WaitGroup
}

const scopeKey ctxKey = 2

// background returns ctx as the scope of the runs started with it.
func (s *Service) background(ctx context.Context) context.Context {
	sc := &runScope{}
	sc.ctx = context.WithValue(ctx, scopeKey, sc)
	return sc.ctx
}

// recovering reports whether work done with ctx may repeat what a
// process that died did: the background work resumes what was left
// unfinished (by this process before a restart, or by another replica), so
// a notice it delivers may already have been posted.
func recovering(ctx context.Context) bool {
	_, ok := ctx.Value(scopeKey).(*runScope)
	return ok
}

// waitRuns waits for the runs started in ctx's scope.
func (s *Service) waitRuns(ctx context.Context) {
	if sc, ok := ctx.Value(scopeKey).(*runScope); ok {
		sc.wg.Wait()
	}
}

// goOnce runs fn, work of kind ("" for the steps) on invitation id, in the
// background unless a run of the same kind for id is in progress here or
// another live replica runs id's work (claim). The run's context is the
// service's own, or, when ctx is in the background work's scope, that
// scope's (the run stops when the replica stops leading). A request's
// context never is: the run outlives the request. Wait waits for every
// run.
func (s *Service) goOnce(ctx context.Context, kind, id string, fn func(context.Context)) {
	key := kind + id
	s.mu.Lock()
	defer s.mu.Unlock()
	rctx := s.ctx
	sc, scoped := ctx.Value(scopeKey).(*runScope)
	if scoped {
		rctx = sc.ctx
	}
	if s.ctx.Err() != nil || rctx.Err() != nil {
		return
	}
	if s.running[key] {
		// The run in progress may have looked at the store before the
		// change that asks for this one: run again when it ends.
		s.again[key] = true
		return
	}
	s.running[key] = true
	s.wg.Add(1)
	if scoped {
		sc.wg.Add(1)
	}
	go func() {
		defer s.wg.Done()
		if scoped {
			defer sc.wg.Done()
		}
		for {
			cctx, release, claimed, busy := s.claim(rctx, id)
			if busy && !scoped && SleepContext(rctx, claimRetry) == nil {
				// Asked for here (a button, an approval) while another
				// live replica runs the invitation: run once it is done.
				// (The background work comes back on its own.)
				continue
			}
			if claimed {
				s.runAgain(cctx, key, fn)
				release()
			}
			s.mu.Lock()
			// Asked again while the claim was being released (a
			// change after fn last looked): claim again.
			if !claimed || !s.again[key] || rctx.Err() != nil {
				break // holding s.mu
			}
			delete(s.again, key)
			s.mu.Unlock()
		}
		delete(s.again, key)
		delete(s.running, key)
		if s.idle != nil {
			close(s.idle)
			s.idle = nil
		}
		s.mu.Unlock()
	}()
}

// claimRetry is how often a run asked for on this replica tries again to
// claim an invitation another live replica runs.
const claimRetry = time.Second

// runAgain runs fn, and again as long as a run of key was asked for
// while it ran.
func (s *Service) runAgain(ctx context.Context, key string, fn func(context.Context)) {
	for {
		fn(ctx)
		s.mu.Lock()
		again := s.again[key] && ctx.Err() == nil
		delete(s.again, key)
		s.mu.Unlock()
		if !again {
			return
		}
	}
}

// keyLock is a mutex held per key (an invitation ID).
type keyLock struct {
	sync.Mutex
	users int
}

// lock locks key and returns the unlock function.
func (s *Service) lock(key string) func() {
	s.mu.Lock()
	l := s.locks[key]
	if l == nil {
		l = &keyLock{}
		s.locks[key] = l
	}
	l.users++
	s.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		s.mu.Lock()
		if l.users--; l.users == 0 {
			delete(s.locks, key)
		}
		s.mu.Unlock()
	}
}

func (s *Service) event(inv *Invitation, actor, action, detail string) Event {
	return Event{At: s.now(), InvitationID: inv.ID, ObjectID: inv.ObjectID, Actor: actor, Action: action, Detail: detail}
}

// setState moves inv to state and records why. When the invitation ends
// (its first terminal state: notified or failed) and its origin waits for
// the outcome, the completion is queued in the same write.
func (s *Service) setState(inv *Invitation, to State, actor, action, detail string) {
	ends := !inv.State.Terminal() && to.Terminal()
	inv.State = to
	inv.UpdatedAt = s.now()
	inv.History = append(inv.History, s.event(inv, actor, action, detail))
	if ends && inv.Origin.Completes() {
		inv.Outbox = append(inv.Outbox, Outgoing{Kind: NoticeStepCompleted, At: inv.UpdatedAt})
	}
}

// Age renders a duration the way invitebot tells people how old something
// is: "less than a minute", "12 min", "5 h", "3 days".
func Age(d time.Duration) string { return age(d) }

func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "less than a minute"
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d.Hours()))
	default:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
}

// Package flowstest provides in-memory fakes of flows' ports, for tests:
// a Store (also a Leaser), a recording Notifier and a scripted Directory.
// They are hand-written and assert nothing themselves: tests check
// outcomes.
//
// TestStore is the store conformance suite. Every flows.Store backend runs
// it from its own tests, with a function that opens an empty store:
//
//	func TestConformance(t *testing.T) {
//		flowstest.TestStore(t, func(t *testing.T) flows.Store {
//			s := openEmpty(t) // closed in t.Cleanup
//			return s
//		})
//	}
//
// It covers every Store method, the uniqueness of origin keys and of the
// address in flight (also under concurrent creates), atomic updates under
// concurrency, filters, the outbox and the audit log's order, and, for a
// store that is also a flows.Leaser, leases and fenced writes. The
// in-memory Store runs it here, bbolt in internal/store. A backend that
// several processes share also runs TestStorePair, the same suite through
// two handles on one database.
package flowstest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/invitebot/invitebot/flows"
)

// Store is an in-memory flows.Store, flows.Leaser and flows.LeaseSweeper.
// Values are copied in and out.
type Store struct {
	// Now, if set, is the leases' clock; nil: time.Now.
	Now func() time.Time

	mu     sync.Mutex
	invs   map[string]*flows.Invitation
	guests map[string]flows.Guest
	audit  []flows.Event
	leases map[string]flows.Lease
}

var (
	_ flows.Store        = (*Store)(nil)
	_ flows.Leaser       = (*Store)(nil)
	_ flows.LeaseSweeper = (*Store)(nil)
)

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{invs: map[string]*flows.Invitation{}, guests: map[string]flows.Guest{}}
}

// CreateInvitation implements flows.Store.
func (s *Store) CreateInvitation(ctx context.Context, inv *flows.Invitation) (*flows.Invitation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fenced(ctx); err != nil {
		return nil, err
	}
	for _, old := range s.sorted() {
		if inv.Origin.Repeats(old.Origin) {
			return old.Clone(), flows.ErrDuplicate
		}
	}
	if old := s.inFlight(inv); old != nil {
		return old.Clone(), flows.ErrInFlight
	}
	s.invs[inv.ID] = inv.Clone()
	s.audit = append(s.audit, inv.History...)
	return inv.Clone(), nil
}

// Invitation implements flows.Store.
func (s *Store) Invitation(_ context.Context, id string) (*flows.Invitation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inv, ok := s.invs[id]
	if !ok {
		return nil, flows.ErrNotFound
	}
	return inv.Clone(), nil
}

// UpdateInvitation implements flows.Store.
func (s *Store) UpdateInvitation(ctx context.Context, id string, fn func(*flows.Invitation) error) (*flows.Invitation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fenced(ctx); err != nil {
		return nil, err
	}
	old, ok := s.invs[id]
	if !ok {
		return nil, flows.ErrNotFound
	}
	inv := old.Clone()
	if err := fn(inv); err != nil {
		return nil, err
	}
	if other := s.inFlight(inv); other != nil {
		return nil, fmt.Errorf("flowstest: update %s: invitation %s for the address is in flight: %w", id, other.ID, flows.ErrInFlight)
	}
	if len(inv.History) > len(old.History) {
		s.audit = append(s.audit, inv.History[len(old.History):]...)
	}
	s.invs[id] = inv.Clone()
	return inv, nil
}

// Invitations implements flows.Store.
func (s *Store) Invitations(_ context.Context, f flows.InvitationFilter) ([]*flows.Invitation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*flows.Invitation
	for _, inv := range s.sorted() {
		if f.Match(inv) {
			out = append(out, inv.Clone())
		}
	}
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[len(out)-f.Limit:]
	}
	return out, nil
}

// inFlight returns another unfinished invitation for inv's address, if inv
// is unfinished and there is one.
func (s *Store) inFlight(inv *flows.Invitation) *flows.Invitation {
	if inv.State.Terminal() {
		return nil
	}
	email := flows.NormalizeEmail(inv.Request.Email)
	for _, old := range s.sorted() {
		if old.ID != inv.ID && flows.NormalizeEmail(old.Request.Email) == email && !old.State.Terminal() {
			return old
		}
	}
	return nil
}

func (s *Store) sorted() []*flows.Invitation {
	out := make([]*flows.Invitation, 0, len(s.invs))
	for _, inv := range s.invs {
		out = append(out, inv)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// SaveGuest implements flows.Store.
func (s *Store) SaveGuest(ctx context.Context, g flows.Guest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fenced(ctx); err != nil {
		return err
	}
	g.Groups = slices.Clone(g.Groups)
	s.guests[g.ObjectID] = g
	return nil
}

// Guest implements flows.Store.
func (s *Store) Guest(_ context.Context, objectID string) (*flows.Guest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.guests[objectID]
	if !ok {
		return nil, flows.ErrNotFound
	}
	g.Groups = slices.Clone(g.Groups)
	return &g, nil
}

// AuditLog implements flows.Store.
func (s *Store) AuditLog(_ context.Context, since time.Time) ([]flows.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []flows.Event
	for _, e := range s.audit {
		if !e.At.Before(since) {
			out = append(out, e)
		}
	}
	return out, nil
}

// AcquireLease implements flows.Leaser.
func (s *Store) AcquireLease(_ context.Context, name, holder string, ttl time.Duration) (flows.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	cur := s.leases[name]
	if cur.Holder != holder && cur.Holder != "" && now.Before(cur.Expires) {
		return flows.Lease{}, &flows.LeaseHeldError{Current: cur}
	}
	l := flows.Lease{Name: name, Holder: holder, Epoch: cur.Epoch, Expires: now.Add(ttl)}
	if cur.Holder != holder {
		l.Epoch++
	}
	if s.leases == nil {
		s.leases = map[string]flows.Lease{}
	}
	s.leases[name] = l
	return l, nil
}

// ReleaseLease implements flows.Leaser.
func (s *Store) ReleaseLease(_ context.Context, l flows.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.leases[l.Name]; cur.Holder == l.Holder && cur.Epoch == l.Epoch {
		s.leases[l.Name] = flows.Lease{Name: l.Name, Epoch: cur.Epoch, Expires: s.now()}
	}
	return nil
}

// DeleteStaleLeases implements flows.LeaseSweeper, earliest expiry first.
func (s *Store) DeleteStaleLeases(_ context.Context, prefix string, age time.Duration, limit int) (int, error) {
	if prefix == "" {
		return 0, errors.New("flowstest: delete stale leases: empty prefix")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	before := s.now().Add(-age)
	var stale []flows.Lease
	for name, l := range s.leases {
		if strings.HasPrefix(name, prefix) && name != flows.LeaseBackground && l.Expires.Before(before) {
			stale = append(stale, l)
		}
	}
	slices.SortFunc(stale, func(a, b flows.Lease) int { return a.Expires.Compare(b.Expires) })
	if len(stale) > limit {
		stale = stale[:limit]
	}
	for _, l := range stale {
		delete(s.leases, l.Name)
	}
	return len(stale), nil
}

// Leases returns the names of the leases the store keeps, held or not.
func (s *Store) Leases() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.leases))
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// fenced returns ErrFenced if ctx is fenced with a lease that changed
// hands. The caller holds s.mu.
func (s *Store) fenced(ctx context.Context) error {
	l, ok := flows.Fence(ctx)
	if !ok {
		return nil
	}
	if cur := s.leases[l.Name]; cur.Holder != l.Holder || cur.Epoch != l.Epoch {
		return fmt.Errorf("flowstest: lease %q is at epoch %d, not %s's %d: %w", l.Name, cur.Epoch, l.Holder, l.Epoch, flows.ErrFenced)
	}
	return nil
}

// Notifier records notices. NotifyFunc, if set, decides the result.
type Notifier struct {
	NotifyFunc func(context.Context, flows.Notice) error

	mu      sync.Mutex
	notices []flows.Notice
	changed chan struct{}
}

var _ flows.Notifier = (*Notifier)(nil)

// Notify implements flows.Notifier. A NoticeDone gets a MessageRef in the
// inviter's DM, a NoticeApprovalRequested one in Notice.To.
func (n *Notifier) Notify(ctx context.Context, no flows.Notice) (flows.MessageRef, error) {
	n.mu.Lock()
	n.notices = append(n.notices, no)
	if n.changed != nil {
		close(n.changed)
		n.changed = nil
	}
	f := n.NotifyFunc
	seq := len(n.notices)
	n.mu.Unlock()
	if f != nil {
		if err := f(ctx, no); err != nil {
			return flows.MessageRef{}, err
		}
	}
	switch no.Kind {
	case flows.NoticeDone:
		return flows.MessageRef{Channel: "D" + no.Invitation.Inviter.UserID, TS: fmt.Sprintf("%d.000100", seq)}, nil
	case flows.NoticeApprovalRequested:
		return flows.MessageRef{Channel: no.To, TS: fmt.Sprintf("%d.000100", seq)}, nil
	}
	return flows.MessageRef{}, nil
}

// Count returns how many notices of kind were delivered for invitation id
// ("" for any invitation).
func (n *Notifier) Count(kind flows.NoticeKind, id string) int {
	c := 0
	for _, no := range n.Notices() {
		if no.Kind == kind && (id == "" || no.Invitation.ID == id) {
			c++
		}
	}
	return c
}

// Notices returns the notices so far.
func (n *Notifier) Notices() []flows.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.notices)
}

// WaitFor blocks until cond holds for the notices so far, or ctx is done.
func (n *Notifier) WaitFor(ctx context.Context, cond func([]flows.Notice) bool) error {
	for {
		n.mu.Lock()
		if cond(slices.Clone(n.notices)) {
			n.mu.Unlock()
			return nil
		}
		if n.changed == nil {
			n.changed = make(chan struct{})
		}
		ch := n.changed
		n.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Call is one recorded Directory call.
type Call struct {
	Op   string
	Args []string
}

// Directory is a scripted flows.Directory. A nil func field means the
// default behaviour: an in-memory tenant that verifies contoso.com.
type Directory struct {
	VerifiedDomainsFunc func(context.Context) ([]string, error)
	FindUsersFunc       func(ctx context.Context, email string, withUPN bool) ([]flows.DirectoryUser, error)
	InviteFunc          func(context.Context, flows.Invite) (flows.Invited, error)
	UpdateUserFunc      func(ctx context.Context, id string, a flows.Attributes) error
	AddGroupMemberFunc  func(ctx context.Context, groupID, userID string) error
	// RemoveGroupMemberFunc, if set, answers RemoveGroupMember.
	RemoveGroupMemberFunc func(ctx context.Context, groupID, userID string) error
	// ExternalStatesFunc, if set, answers ExternalStates.
	ExternalStatesFunc func(ctx context.Context, ids []string) ([]flows.ExternalState, error)
	// AddSponsorFunc, if set, answers AddSponsor (after recording the call).
	AddSponsorFunc func(ctx context.Context, userID, sponsorID string) error

	mu       sync.Mutex
	users    []flows.DirectoryUser
	members  map[string][]string
	sponsors map[string][]string
	calls    []Call
}

var _ flows.Directory = (*Directory)(nil)

// NewDirectory returns an empty Directory.
func NewDirectory() *Directory { return &Directory{members: map[string][]string{}} }

// AddUser adds a user to the fake directory.
func (d *Directory) AddUser(u flows.DirectoryUser) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users = append(d.users, u)
}

// Users returns the directory's users.
func (d *Directory) Users() []flows.DirectoryUser {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.users)
}

// GroupMembers returns the members of a group.
func (d *Directory) GroupMembers(gid string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.members[gid])
}

// Calls returns every call, in order.
func (d *Directory) Calls() []Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// Count returns how many calls of op ("Invite", "FindUsers", …) were made.
func (d *Directory) Count(op string) int {
	n := 0
	for _, c := range d.Calls() {
		if c.Op == op {
			n++
		}
	}
	return n
}

func (d *Directory) record(op string, args ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, Call{Op: op, Args: args})
}

// VerifiedDomains implements flows.Directory.
func (d *Directory) VerifiedDomains(ctx context.Context) ([]string, error) {
	d.record("VerifiedDomains")
	if f := d.VerifiedDomainsFunc; f != nil {
		return f(ctx)
	}
	return []string{"contoso.com"}, nil
}

// FindUsers implements flows.Directory.
func (d *Directory) FindUsers(ctx context.Context, email string, withUPN bool) ([]flows.DirectoryUser, error) {
	d.record("FindUsers", email)
	if f := d.FindUsersFunc; f != nil {
		return f(ctx, email, withUPN)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []flows.DirectoryUser
	for _, u := range d.users {
		if strings.EqualFold(u.Mail, email) || withUPN && strings.EqualFold(u.UserPrincipalName, email) {
			out = append(out, u)
		}
	}
	return out, nil
}

// Invite implements flows.Directory.
func (d *Directory) Invite(ctx context.Context, inv flows.Invite) (flows.Invited, error) {
	d.record("Invite", inv.Email)
	if f := d.InviteFunc; f != nil {
		return f(ctx, inv)
	}
	return d.DefaultInvite(ctx, inv)
}

// DefaultInvite is Invite's default: like Graph, it returns the existing
// user for an address already invited, else creates one.
func (d *Directory) DefaultInvite(_ context.Context, inv flows.Invite) (flows.Invited, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := ""
	for _, u := range d.users {
		if strings.EqualFold(u.Mail, inv.Email) {
			id = u.ID
		}
	}
	if id == "" {
		id = "u-" + random()
		ut := inv.UserType
		if ut == "" {
			ut = flows.UserTypeGuest
		}
		d.users = append(d.users, flows.DirectoryUser{ID: id, DisplayName: inv.DisplayName, Mail: inv.Email,
			UserType: ut, ExternalUserState: "PendingAcceptance"})
	}
	return flows.Invited{InvitationID: "i-" + random(), UserID: id, Status: "PendingAcceptance",
		RedeemURL: "https://login.microsoftonline.com/redeem?rd=x&ticket=" + random()}, nil
}

// UpdateUser implements flows.Directory.
func (d *Directory) UpdateUser(ctx context.Context, id string, a flows.Attributes) error {
	d.record("UpdateUser", id)
	if f := d.UpdateUserFunc; f != nil {
		return f(ctx, id, a)
	}
	return nil
}

// AddGroupMember implements flows.Directory.
func (d *Directory) AddGroupMember(ctx context.Context, gid, uid string) error {
	d.record("AddGroupMember", gid, uid)
	if f := d.AddGroupMemberFunc; f != nil {
		return f(ctx, gid, uid)
	}
	return d.DefaultAddGroupMember(ctx, gid, uid)
}

// DefaultAddGroupMember is AddGroupMember's default: idempotent adds.
func (d *Directory) DefaultAddGroupMember(_ context.Context, gid, uid string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if gid == "" || uid == "" {
		return errors.New("flowstest: empty id")
	}
	if !slices.Contains(d.members[gid], uid) {
		d.members[gid] = append(d.members[gid], uid)
	}
	return nil
}

// RemoveGroupMember implements flows.Directory.
func (d *Directory) RemoveGroupMember(ctx context.Context, gid, uid string) error {
	d.record("RemoveGroupMember", gid, uid)
	if f := d.RemoveGroupMemberFunc; f != nil {
		return f(ctx, gid, uid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.members[gid] = slices.DeleteFunc(d.members[gid], func(id string) bool { return id == uid })
	return nil
}

// DeleteUser implements flows.Directory.
func (d *Directory) DeleteUser(_ context.Context, uid string) error {
	d.record("DeleteUser", uid)
	d.mu.Lock()
	defer d.mu.Unlock()
	i := slices.IndexFunc(d.users, func(u flows.DirectoryUser) bool { return u.ID == uid })
	if i < 0 {
		return &flows.DirectoryError{Op: "delete user", Status: 404, Code: "Request_ResourceNotFound"}
	}
	d.users = slices.Delete(d.users, i, i+1)
	return nil
}

// User implements flows.Directory: by object ID or UPN.
func (d *Directory) User(_ context.Context, idOrUPN string) (flows.DirectoryUser, error) {
	d.record("User", idOrUPN)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range d.users {
		if u.ID == idOrUPN || strings.EqualFold(u.UserPrincipalName, idOrUPN) {
			return u, nil
		}
	}
	return flows.DirectoryUser{}, &flows.DirectoryError{Op: "get user", Status: 404, Code: "Request_ResourceNotFound"}
}

// ExternalStates implements flows.Directory from the users' ExternalUserState.
func (d *Directory) ExternalStates(ctx context.Context, ids []string) ([]flows.ExternalState, error) {
	d.record("ExternalStates", ids...)
	if len(ids) > flows.MaxStatesPerRequest {
		return nil, fmt.Errorf("flowstest: %d ids in one batch", len(ids))
	}
	if f := d.ExternalStatesFunc; f != nil {
		return f(ctx, ids)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]flows.ExternalState, 0, len(ids))
	for _, id := range ids {
		i := slices.IndexFunc(d.users, func(u flows.DirectoryUser) bool { return u.ID == id })
		if i < 0 {
			out = append(out, flows.ExternalState{UserID: id, Err: &flows.DirectoryError{Op: "read user state", Status: 404}})
			continue
		}
		out = append(out, flows.ExternalState{UserID: id, State: d.users[i].ExternalUserState})
	}
	return out, nil
}

// DisableUser implements flows.Directory.
func (d *Directory) DisableUser(_ context.Context, uid string) error {
	d.record("DisableUser", uid)
	return nil
}

// AddSponsor implements flows.Directory.
func (d *Directory) AddSponsor(ctx context.Context, uid, sponsor string) error {
	d.record("AddSponsor", uid, sponsor)
	if f := d.AddSponsorFunc; f != nil {
		if err := f(ctx, uid, sponsor); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sponsors == nil {
		d.sponsors = map[string][]string{}
	}
	if !slices.Contains(d.sponsors[uid], sponsor) {
		d.sponsors[uid] = append(d.sponsors[uid], sponsor)
	}
	return nil
}

// Sponsors returns a user's sponsors.
func (d *Directory) Sponsors(uid string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.sponsors[uid])
}

// People is a flows.People from a map of Slack user ID → email.
type People map[string]string

// Email implements flows.People.
func (p People) Email(_ context.Context, id string) (string, error) { return p[id], nil }

// SetState sets a user's externalUserState.
func (d *Directory) SetState(uid, state string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.users {
		if d.users[i].ID == uid {
			d.users[i].ExternalUserState = state
		}
	}
}

func random() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Delegation is a flows.Delegation: people connect with Connect; their
// invitations go to Directory (recorded there as "InviteAs" calls, with
// the person's object ID) unless InviteFunc answers; ReadyFunc, if set,
// answers Ready.
type Delegation struct {
	Directory  *Directory
	InviteFunc func(ctx context.Context, slackUserID string, inv flows.Invite) (flows.Invited, error)
	ReadyFunc  func(ctx context.Context, slackUserID string) error

	mu    sync.Mutex
	conns map[string]flows.Connection
}

var _ flows.Delegation = (*Delegation)(nil)

// Connect connects the Slack user as c.
func (d *Delegation) Connect(slackUserID string, c flows.Connection) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conns == nil {
		d.conns = map[string]flows.Connection{}
	}
	d.conns[slackUserID] = c
}

// Disconnect removes the Slack user's connection.
func (d *Delegation) Disconnect(slackUserID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.conns, slackUserID)
}

// Connection implements flows.Delegation.
func (d *Delegation) Connection(_ context.Context, slackUserID string) (flows.Connection, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.conns[slackUserID]
	if !ok {
		return flows.Connection{}, &flows.SignInError{Reason: flows.SignInNotConnected}
	}
	return c, nil
}

// Ready implements flows.Delegation: ReadyFunc's answer if set, else
// whether the person is connected.
func (d *Delegation) Ready(ctx context.Context, slackUserID string) error {
	if f := d.ReadyFunc; f != nil {
		return f(ctx, slackUserID)
	}
	_, err := d.Connection(ctx, slackUserID)
	return err
}

// Invite implements flows.Delegation.
func (d *Delegation) Invite(ctx context.Context, slackUserID string, inv flows.Invite) (flows.Invited, error) {
	c, err := d.Connection(ctx, slackUserID)
	if err != nil {
		return flows.Invited{}, err
	}
	d.Directory.record("InviteAs", c.ObjectID, inv.Email)
	if f := d.InviteFunc; f != nil {
		return f(ctx, slackUserID, inv)
	}
	return d.Directory.DefaultInvite(ctx, inv)
}

// SignInStore is an in-memory flows.SignInStore.
type SignInStore struct {
	mu      sync.Mutex
	m       map[string][]byte
	expires map[string]time.Time
	locks   flows.KeyLocks
}

var _ flows.SignInStore = (*SignInStore)(nil)

// SignInRecord implements flows.SignInStore.
func (s *SignInStore) SignInRecord(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, flows.ErrNotFound
	}
	return slices.Clone(v), nil
}

// PutSignInRecord implements flows.SignInStore.
func (s *SignInStore) PutSignInRecord(_ context.Context, key string, value []byte, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m, s.expires = map[string][]byte{}, map[string]time.Time{}
	}
	s.m[key] = slices.Clone(value)
	delete(s.expires, key)
	if !expires.IsZero() {
		s.expires[key] = expires
	}
	return nil
}

// TakeSignInRecord implements flows.SignInStore.
func (s *SignInStore) TakeSignInRecord(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, flows.ErrNotFound
	}
	delete(s.m, key)
	delete(s.expires, key)
	return v, nil
}

// DeleteSignInRecord implements flows.SignInStore.
func (s *SignInStore) DeleteSignInRecord(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	delete(s.expires, key)
	return nil
}

// LockSignInRecord implements flows.SignInStore: one process, so an
// in-process lock.
func (s *SignInStore) LockSignInRecord(ctx context.Context, key string) (flows.SignInLock, error) {
	return flows.LockSignInRecordLocally(ctx, s, &s.locks, key)
}

// DeleteExpiredSignInRecords implements flows.SignInStore.
func (s *SignInStore) DeleteExpiredSignInRecords(_ context.Context, before time.Time, limit int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []string
	for k, at := range s.expires {
		if at.Before(before) {
			due = append(due, k)
		}
	}
	slices.SortFunc(due, func(a, b string) int { return cmp.Or(s.expires[a].Compare(s.expires[b]), strings.Compare(a, b)) })
	if len(due) > limit {
		due = due[:max(limit, 0)]
	}
	for _, k := range due {
		delete(s.m, k)
		delete(s.expires, k)
	}
	return len(due), nil
}

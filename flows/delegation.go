package flows

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// InviteAs says whose token POST /invitations (invite, resend, convert) is
// sent with. Every other Graph call uses the app's own token.
type InviteAs string

// The values of INVITEBOT_INVITE_AS.
const (
	// InviteAsApp: the app's token (application User.Invite.All).
	InviteAsApp InviteAs = "app"
	// InviteAsInviter: the inviting person's delegated token; an
	// invitation waits in awaiting_sign_in until they connect.
	InviteAsInviter InviteAs = "inviter"
	// InviteAsInviterOrApp: the person's token when they are connected,
	// else the app's.
	InviteAsInviterOrApp InviteAs = "inviter_or_app"
)

// StateAwaitingSignIn: the invitation waits for its inviter to connect
// their Microsoft account (or to reconnect after a refresh token was
// revoked or expired); it goes on by itself once they have.
const StateAwaitingSignIn State = "awaiting_sign_in"

// SignInTimeout is how long an invitation waits in awaiting_sign_in before
// it fails as not connected.
const SignInTimeout = 24 * time.Hour

// NoticeSignIn asks the inviter to connect (or reconnect) their Microsoft
// account: the Notifier shows them a fresh connect link.
const NoticeSignIn NoticeKind = "sign_in"

// The failure codes of delegated invitations.
const (
	// FailInviterRefused: Entra refused the inviting person (a 403 to
	// their own token: e.g. only Guest Inviters may invite).
	FailInviterRefused FailureCode = "inviter_refused"
	// FailNotConnected: the inviter did not connect their Microsoft
	// account within SignInTimeout.
	FailNotConnected FailureCode = "not_connected"
)

// ErrSignInNeeded is returned (wrapped in a *SignInError) when an
// invitation must be sent as a person who has no usable connection: they
// never connected, or Microsoft refused to refresh their token.
var ErrSignInNeeded = errors.New("the inviter must connect their Microsoft account")

// SignInReason says why a person must (re)connect.
type SignInReason string

// The sign-in reasons.
const (
	SignInNotConnected SignInReason = "not_connected" // never connected, or disconnected
	SignInExpired      SignInReason = "expired"       // refresh token expired or revoked, MFA or Conditional Access
	SignInConsent      SignInReason = "consent"       // the app's delegated permission lacks admin consent
)

// SignInError is why a delegated call could not get a token. It never
// carries a token or Microsoft's full answer, only the AADSTS code.
type SignInError struct {
	Reason SignInReason
	Code   string // e.g. "AADSTS700082", or Graph's "InvalidAuthenticationToken"; "" if none
}

func (e *SignInError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("sign-in needed (%s, %s)", e.Reason, e.Code)
	}
	return fmt.Sprintf("sign-in needed (%s)", e.Reason)
}

// Is makes errors.Is(err, ErrSignInNeeded) true.
func (e *SignInError) Is(target error) bool { return target == ErrSignInNeeded }

// Connection is a person's connected Microsoft account.
type Connection struct {
	ObjectID    string    `json:"oid"`
	TenantID    string    `json:"tid"`
	Username    string    `json:"username"` // preferred_username: display only
	Name        string    `json:"name"`
	ConnectedAt time.Time `json:"connectedAt"`
}

// Delegation sends invitations as the inviting person, with the delegated
// token they granted by connecting their Microsoft account.
type Delegation interface {
	// Connection returns the Slack user's connected account, or a
	// *SignInError (SignInNotConnected) if they have none.
	Connection(ctx context.Context, slackUserID string) (Connection, error)
	// Invite POSTs inv with the Slack user's own token. Graph refusing
	// the token (401) is the implementation's to handle: it refreshes the
	// token and sends once more. A *SignInError means no token Graph
	// accepts could be had (nothing was sent): the refresh was refused,
	// or Graph refused the refreshed token too. Graph's other refusals are
	// *DirectoryError values as from Directory.Invite.
	Invite(ctx context.Context, slackUserID string, inv Invite) (Invited, error)
	// Ready checks that a token can be had for the Slack user now (from
	// their cache, or by redeeming their refresh token, which Microsoft
	// may refuse). A *SignInError says they must (re)connect.
	Ready(ctx context.Context, slackUserID string) error
}

// sender is who sends an invitation: the app, or a person.
type sender struct {
	person string // Slack user ID; "" is the app
	oid    string // their Entra object ID
}

// String is the audit log's record of it: "as app" or "as inviter <oid>".
func (sd sender) String() string {
	if sd.person == "" {
		return "as app"
	}
	return "as inviter " + sd.oid
}

// sender is the one place that decides whose token POST /invitations
// uses, from INVITEBOT_INVITE_AS and whether the inviter is connected. A
// *SignInError means the invitation must wait for the inviter.
func (s *Service) sender(ctx context.Context, who Inviter) (sender, error) {
	if s.inviteAs == InviteAsApp || s.inviteAs == "" || s.delegation == nil {
		return sender{}, nil
	}
	c, err := s.delegation.Connection(ctx, who.UserID)
	switch {
	case err == nil:
		return sender{person: who.UserID, oid: c.ObjectID}, nil
	case errors.Is(err, ErrSignInNeeded) && s.inviteAs == InviteAsInviterOrApp:
		return sender{}, nil
	}
	return sender{}, err
}

// ReadyToInvite is asked before a run of many invitations (a bulk file),
// so that the run is refused as a whole rather than half done: with
// INVITEBOT_INVITE_AS=inviter, who must be connected with a sign-in
// Microsoft still accepts, else a *SignInError says why (nothing is
// recorded or sent). In the other modes it is nil: app sends as the app,
// and inviter_or_app sends as the app for a person who is not connected.
func (s *Service) ReadyToInvite(ctx context.Context, who Inviter) error {
	if s.inviteAs != InviteAsInviter || s.delegation == nil {
		return nil
	}
	if err := s.delegation.Ready(ctx, who.UserID); err != nil {
		return fmt.Errorf("sign-in of %s: %w", who.UserID, err)
	}
	return nil
}

// sendInvite POSTs in as sd, holding the gate like every interactive call.
// With inviter_or_app, a person whose token Microsoft will no longer
// refresh is sent for by the app instead (their connection is gone).
func (s *Service) sendInvite(ctx context.Context, sd *sender, in Invite) (Invited, error) {
	if sd.person == "" {
		return s.dir.Invite(ctx, in)
	}
	res, err := call(interactive{g: &s.gate, now: s.now, grace: s.grace}, ctx, // as the app's calls
		func(ctx context.Context) (Invited, error) { return s.delegation.Invite(ctx, sd.person, in) })
	if errors.Is(err, ErrSignInNeeded) && s.inviteAs == InviteAsInviterOrApp {
		s.log.InfoContext(ctx, "inviter's sign-in no longer usable; sending as the app", "slack_user", sd.person, "err", err)
		*sd = sender{}
		return s.dir.Invite(ctx, in)
	}
	var de *DirectoryError
	if errors.As(err, &de) && de.Status == http.StatusForbidden {
		return res, &InviterRefusedError{Err: de}
	}
	return res, err
}

// InviterRefusedError is Graph refusing an invitation sent with the
// inviting person's own token (403): Entra applied their rights, not the
// app's (e.g. only Guest Inviters may invite).
type InviterRefusedError struct{ Err *DirectoryError }

func (e *InviterRefusedError) Error() string { return "refused for the inviter: " + e.Err.Error() }

// Unwrap returns the DirectoryError.
func (e *InviterRefusedError) Unwrap() error { return e.Err }

// awaitSignIn parks inv (checking or inviting) in awaiting_sign_in and
// asks the inviter to connect; the request is in the outbox, written with
// the state, so a crash cannot lose it.
func (s *Service) awaitSignIn(ctx context.Context, inv *Invitation, why error) error {
	detail := "the inviter has not connected their Microsoft account"
	var se *SignInError
	if errors.As(why, &se) && se.Reason != SignInNotConnected {
		detail = "the inviter must reconnect their Microsoft account (" + string(se.Reason) + ")"
		if se.Code != "" {
			detail += ": " + se.Code
		}
	}
	from := inv.State
	got, err := s.store.UpdateInvitation(ctx, inv.ID, func(cur *Invitation) error {
		if cur.State != from {
			return fmt.Errorf("await sign-in: state is %s: %w", cur.State, ErrWrongState)
		}
		s.setState(cur, StateAwaitingSignIn, ActorBot, "awaiting sign-in", detail)
		if !cur.Origin.Batch() { // a bulk run reports its rows itself
			cur.Outbox = append(cur.Outbox, Outgoing{Kind: NoticeSignIn, At: cur.UpdatedAt})
		}
		return nil
	})
	if err != nil {
		return err
	}
	*inv = *got
	s.log.InfoContext(ctx, "invitation waits for the inviter's sign-in", "invitation", got, "from", from)
	s.flush(ctx, inv.ID)
	return nil
}

// toInviting moves a checked invitation on to inviting, or to
// awaiting_sign_in when it must be sent as an inviter who is not
// connected.
func (s *Service) toInviting(ctx context.Context, inv *Invitation, action, detail string) error {
	if _, err := s.sender(ctx, inv.Inviter); errors.Is(err, ErrSignInNeeded) {
		return s.awaitSignIn(ctx, inv, err)
	} else if err != nil {
		return err
	}
	return s.advance(ctx, inv, StateInviting, action, detail, nil)
}

// Connected is called once a Slack user has connected their Microsoft
// account: their invitations waiting in awaiting_sign_in go on. It returns
// how many. Resume does the same at start-up, so a crash between the
// connection and this call loses nothing.
func (s *Service) Connected(ctx context.Context, slackUserID string) (int, error) {
	invs, err := s.store.Invitations(ctx, InvitationFilter{States: []State{StateAwaitingSignIn}, Inviter: slackUserID})
	if err != nil {
		return 0, fmt.Errorf("connected: %w", err)
	}
	n := 0
	for _, inv := range invs {
		_, err := s.store.UpdateInvitation(ctx, inv.ID, func(cur *Invitation) error {
			if cur.State != StateAwaitingSignIn {
				return ErrWrongState
			}
			s.setState(cur, StateInviting, slackUserID, "connected Microsoft account", "")
			return nil
		})
		if errors.Is(err, ErrWrongState) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("connected: %w", err)
		}
		n++
		s.start(ctx, inv.ID)
	}
	return n, nil
}

// resumeSignIns goes on with the waiting invitations whose inviters are
// connected by now (they connected just before a crash), and fails those
// that waited longer than SignInTimeout.
func (s *Service) resumeSignIns(ctx context.Context) {
	invs, err := s.store.Invitations(ctx, InvitationFilter{States: []State{StateAwaitingSignIn}})
	if err != nil {
		s.log.WarnContext(ctx, "list invitations awaiting sign-in", "err", err)
		return
	}
	done := map[string]bool{}
	for _, inv := range invs {
		who := inv.Inviter.UserID
		if !done[who] {
			if _, err := s.sender(ctx, inv.Inviter); err == nil {
				done[who] = true
				if _, err := s.Connected(ctx, who); err != nil {
					s.log.WarnContext(ctx, "resume after sign-in", "slack_user", who, "err", err)
				}
				continue
			}
		}
		if done[who] || s.now().Sub(inv.UpdatedAt) < SignInTimeout {
			continue
		}
		f := &Failure{Code: FailNotConnected, Message: "the inviter did not connect their Microsoft account within " + age(SignInTimeout)}
		if err := s.failWith(ctx, inv, f); err != nil && !errors.Is(err, ErrWrongState) {
			s.log.WarnContext(ctx, "fail invitation awaiting sign-in", "invitation", inv, "err", err)
		}
	}
}

// SignInStore keeps the sign-in adapter's records (sealed token caches,
// one-time links and sign-ins in progress) by key. Values are opaque to
// the store: the adapter seals what must not be readable at rest. A record
// may carry an expiry, which the store keeps beside the value (never
// inside it), so that expired records can be deleted without reading
// their values or any other data (DeleteExpiredSignInRecords).
type SignInStore interface {
	// SignInRecord returns the value under key, or ErrNotFound. A record
	// whose expiry has passed is returned until it is deleted: the adapter
	// checks its own expiry.
	SignInRecord(ctx context.Context, key string) ([]byte, error)
	// PutSignInRecord stores value under key, replacing any record and its
	// expiry. A zero expires keeps the record until it is deleted.
	PutSignInRecord(ctx context.Context, key string, value []byte, expires time.Time) error
	// TakeSignInRecord returns the value under key and deletes it in the
	// same transaction (single use), or ErrNotFound.
	TakeSignInRecord(ctx context.Context, key string) ([]byte, error)
	// DeleteSignInRecord deletes key; a missing key is not an error.
	DeleteSignInRecord(ctx context.Context, key string) error
	// DeleteExpiredSignInRecords deletes at most limit records whose
	// expiry is earlier than before, earliest first, and returns how many
	// it deleted. It finds them through an index of the expiries.
	DeleteExpiredSignInRecords(ctx context.Context, before time.Time, limit int) (int, error)
	// LockSignInRecord takes key's lock, waiting until ctx is done while
	// another holder has it, whether in this process or in another one
	// on the same store (a replica). The holder reads and writes the
	// record through the lock until it unlocks it. It is the one lock
	// around a person's refresh token: of two replicas refreshing the
	// same person, the second reads what the first wrote back.
	LockSignInRecord(ctx context.Context, key string) (SignInLock, error)
}

// SignInLock is a held lock on one sign-in record, and the holder's way to
// read and write that record. It must not be used after Unlock (but
// Unlock may be called again: it does nothing then).
type SignInLock interface {
	// Record returns the record's value, or ErrNotFound.
	Record(ctx context.Context) ([]byte, error)
	// Put stores the record, as PutSignInRecord.
	Put(ctx context.Context, value []byte, expires time.Time) error
	// Delete deletes the record, as DeleteSignInRecord.
	Delete(ctx context.Context) error
	// Unlock releases the lock.
	Unlock()
}

// KeyLocks is a lock per key within one process, whose waits end with
// their context. The zero value is ready to use.
type KeyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyHold
}

type keyHold struct {
	token chan struct{} // full while the key is locked
	users int           // holder and waiters
}

// Lock takes key's lock, waiting while another holds it, until ctx is
// done. It returns the function that releases it (once).
func (k *KeyLocks) Lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyHold{}
	}
	h := k.locks[key]
	if h == nil {
		h = &keyHold{token: make(chan struct{}, 1)}
		k.locks[key] = h
	}
	h.users++
	k.mu.Unlock()
	select {
	case h.token <- struct{}{}:
		var once sync.Once
		return func() {
			once.Do(func() {
				<-h.token
				k.leave(key, h)
			})
		}, nil
	case <-ctx.Done():
		k.leave(key, h)
		return nil, ctx.Err()
	}
}

func (k *KeyLocks) leave(key string, h *keyHold) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if h.users--; h.users == 0 {
		delete(k.locks, key)
	}
}

// LockSignInRecordLocally implements LockSignInRecord for a store that one
// process holds (bbolt, an in-memory store), where an in-process lock is
// exact: locks are the store's, and the lock reads and writes through s.
func LockSignInRecordLocally(ctx context.Context, s SignInStore, locks *KeyLocks, key string) (SignInLock, error) {
	unlock, err := locks.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	return &localSignInLock{s: s, key: key, unlock: unlock}, nil
}

type localSignInLock struct {
	s      SignInStore
	key    string
	unlock func()
}

func (l *localSignInLock) Record(ctx context.Context) ([]byte, error) {
	return l.s.SignInRecord(ctx, l.key)
}

func (l *localSignInLock) Put(ctx context.Context, value []byte, expires time.Time) error {
	return l.s.PutSignInRecord(ctx, l.key, value, expires)
}

func (l *localSignInLock) Delete(ctx context.Context) error {
	return l.s.DeleteSignInRecord(ctx, l.key)
}

func (l *localSignInLock) Unlock() { l.unlock() }

// internalAccount maps an inviter's Slack email to their Entra account:
// the internal (not guest, not invited) user with that mail, other mail,
// SMTP address or user principal name. "" if there is none. The sponsor
// and the sign-in (AccountOf) use this one mapping.
func (s *Service) internalAccount(ctx context.Context, email string) (string, error) {
	var users []DirectoryUser
	err := s.retryDirectory(ctx, false, nil, func(ctx context.Context) error {
		var err error
		users, err = s.dir.FindUsers(ctx, email, true)
		return err
	})
	if err != nil {
		return "", err
	}
	for _, u := range users {
		if u.UserType != UserTypeGuest && u.ExternalUserState == "" {
			return u.ID, nil
		}
	}
	return "", nil
}

// AccountOf returns the object ID of the Entra account the Slack user's
// email maps to (as for the sponsor): the only account they may connect.
// It returns ErrNotFound when there is none.
func (s *Service) AccountOf(ctx context.Context, slackUserID string) (string, error) {
	if s.people == nil {
		return "", fmt.Errorf("no Slack directory to map %s: %w", slackUserID, ErrNotFound)
	}
	email, err := s.people.Email(ctx, slackUserID)
	if err != nil {
		return "", fmt.Errorf("read Slack email: %w", err)
	}
	if email == "" {
		return "", fmt.Errorf("no Slack email for %s: %w", slackUserID, ErrNotFound)
	}
	oid, err := s.internalAccount(ctx, email)
	if err != nil {
		return "", fmt.Errorf("look up the Entra account: %s", redact(err, email))
	}
	if oid == "" {
		return "", fmt.Errorf("no internal Entra account has the Slack email of %s: %w", slackUserID, ErrNotFound)
	}
	return oid, nil
}

// Sweeping expired sign-in records (links, sign-ins in progress): at most
// signInSweepBatches batches of signInSweepBatch per tracking cycle, each
// its own short transaction.
const (
	signInSweepBatch   = 500
	signInSweepBatches = 10
)

// sweepSignIns deletes expired sign-in records, if the store keeps them.
// It runs in each tracking cycle, so on the replica that runs the
// background work only. It returns how many it deleted.
func (s *Service) sweepSignIns(ctx context.Context) int {
	if s.signIns == nil {
		return 0
	}
	total := 0
	for range signInSweepBatches {
		n, err := s.signIns.DeleteExpiredSignInRecords(ctx, s.now(), signInSweepBatch)
		total += n
		if err != nil {
			if ctx.Err() == nil {
				s.log.WarnContext(ctx, "delete expired sign-in records", "err", err)
			}
			break
		}
		if n < signInSweepBatch {
			break
		}
	}
	return total
}

package flows

import (
	"context"
	"time"
)

// Invite is what is sent to POST /invitations.
type Invite struct {
	Email           string
	DisplayName     string
	RedirectURL     string
	SendMessage     bool // sendInvitationMessage
	Message         string
	CC              string
	UserType        UserType
	ExistingUserID  string // invitedUser.id (convert internal user / reset redemption)
	ResetRedemption bool
	MessageLanguage string // ISO 639; ignored by Graph when Message is set
}

// Invited is Graph's answer to an invitation.
type Invited struct {
	InvitationID string
	UserID       string // invitedUser.id: the guest's Entra object ID
	RedeemURL    string // inviteRedeemUrl: a bearer credential, never log it
	Status       string
	// UserType is invitedUserType: the account's type, Guest or Member (a
	// converted internal account keeps its own).
	UserType UserType
}

// Directory is the tenant's directory (Microsoft Graph). Errors are
// *DirectoryError values (or wrap them), so callers can tell throttling,
// outages, 403 and 404 apart.
type Directory interface {
	// VerifiedDomains returns the tenant's verified domains, lower-cased.
	VerifiedDomains(ctx context.Context) ([]string, error)
	// FindUsers returns the users whose mail, otherMails or SMTP proxy
	// addresses equal email (and userPrincipalName when withUPN is set).
	FindUsers(ctx context.Context, email string, withUPN bool) ([]DirectoryUser, error)
	// Invite creates (or re-sends) an invitation. It is not retried by the
	// adapter: the caller decides, because a retried POST may have effects.
	Invite(ctx context.Context, inv Invite) (Invited, error)
	// UpdateUser writes attrs to the user. ErrNotFound right after an
	// invitation usually means replication delay.
	UpdateUser(ctx context.Context, userID string, attrs Attributes) error
	// AddGroupMember adds the user to the group. It returns nil when the
	// user already is a member.
	AddGroupMember(ctx context.Context, groupID, userID string) error
	// RemoveGroupMember removes the user from the group. It returns nil when
	// the user is not a member.
	RemoveGroupMember(ctx context.Context, groupID, userID string) error
	// DeleteUser deletes the user (Entra keeps it in the recycle bin for 30
	// days). A user that does not exist is ErrNotFound.
	DeleteUser(ctx context.Context, userID string) error
	// User returns the user with the given object ID or userPrincipalName,
	// with the properties a conversion to B2B needs.
	User(ctx context.Context, idOrUPN string) (DirectoryUser, error)
	// DisableUser blocks the user's sign-in (accountEnabled false).
	DisableUser(ctx context.Context, userID string) error
	// AddSponsor makes sponsorID (an internal user) a sponsor of userID. It
	// returns nil when it already is one.
	AddSponsor(ctx context.Context, userID, sponsorID string) error
	// ExternalStates reads externalUserState and its change time for at most
	// MaxStatesPerRequest users in one request (a JSON batch). It returns one
	// entry per id, in any order. An entry's Err is that user's own failure
	// (a *DirectoryError: 404 for a deleted user, 429 with RetryAfter for a
	// throttled item); the returned error is the whole request's.
	ExternalStates(ctx context.Context, ids []string) ([]ExternalState, error)
}

// People are the workspace's people (Slack): how invitebot maps an inviter
// to their Entra account, to record them as the guest's sponsor.
type People interface {
	// Email returns the Slack user's email address, or "" if Slack has none.
	Email(ctx context.Context, slackUserID string) (string, error)
}

// MaxStatesPerRequest is how many users one ExternalStates call may read:
// Graph's JSON batch limit.
const MaxStatesPerRequest = 20

// ExternalState is an invited user's acceptance state.
type ExternalState struct {
	UserID string
	// State is "PendingAcceptance", "Accepted" or "" (Graph's null: not an
	// invited external user, e.g. a self-service sign-up guest).
	State     string
	ChangedAt time.Time // externalUserStateChangeDateTime; zero if null
	Err       error
}

// Store keeps invitations, guests and the audit log durably. Every new Event
// in an invitation's History is appended to the audit log in the same
// transaction that stores the invitation.
//
// Two invariants hold across every write: at most one invitation per
// origin key (Origin.UniqueKey, when not ""), and at most one unfinished
// invitation (state not Terminal) per address (NormalizeEmail). A backend
// with indexes keeps one per InvitationFilter field; Invitation.Tracked
// and State.Terminal depend only on the record, so they can be computed on
// each write. flowstest.TestStore checks a backend against this contract.
type Store interface {
	// CreateInvitation stores a new invitation. If an invitation from the
	// same origin (inv.Origin.UniqueKey) exists, it returns that one and
	// ErrDuplicate; if another unfinished invitation exists for the same
	// address, it returns that one and ErrInFlight. Nothing is written in
	// either case.
	CreateInvitation(ctx context.Context, inv *Invitation) (*Invitation, error)
	// Invitation returns the invitation with the given ID, or ErrNotFound.
	Invitation(ctx context.Context, id string) (*Invitation, error)
	// UpdateInvitation applies fn to the stored invitation atomically and
	// returns the result. If fn returns an error nothing is written and
	// that error is returned. If the result is unfinished while another
	// unfinished invitation exists for its address (a finished one
	// revived), nothing is written and the error wraps ErrInFlight. fn
	// must not change the ID, the Origin or the address.
	UpdateInvitation(ctx context.Context, id string, fn func(*Invitation) error) (*Invitation, error)
	// Invitations returns the invitations that f selects, oldest first
	// (by CreatedAt, then ID).
	Invitations(ctx context.Context, f InvitationFilter) ([]*Invitation, error)
	// SaveGuest inserts or replaces the guest with g.ObjectID.
	SaveGuest(ctx context.Context, g Guest) error
	// Guest returns the guest with the given object ID, or ErrNotFound.
	Guest(ctx context.Context, objectID string) (*Guest, error)
	// AuditLog returns the audit events at or after since, oldest first.
	AuditLog(ctx context.Context, since time.Time) ([]Event, error)
}

// NoticeKind says what a Notice tells the inviter.
type NoticeKind string

// The notice kinds.
const (
	// NoticeProgress: the invitation moved to a new state (best effort).
	NoticeProgress NoticeKind = "progress"
	// NoticeRetrying: Graph throttled or failed; the step is retried after RetryIn.
	NoticeRetrying NoticeKind = "retrying"
	// NoticeMatches: existing users were found; the inviter must pick.
	NoticeMatches NoticeKind = "matches"
	// NoticeDone: the guest is invited/granted and provisioned.
	NoticeDone NoticeKind = "done"
	// NoticeFailed: the invitation failed; Invitation.Failure says why.
	NoticeFailed NoticeKind = "failed"
	// NoticeAccepted: the guest accepted (redeemed) the invitation.
	NoticeAccepted NoticeKind = "accepted"
	// NoticeRemoved: the guest was deleted in Entra, not by invitebot.
	NoticeRemoved NoticeKind = "removed"
	// NoticeReminder: the invitation has been pending for a long time.
	NoticeReminder NoticeKind = "reminder"
	// NoticeActionDone: a lifecycle action (Notice.Action) succeeded.
	NoticeActionDone NoticeKind = "action_done"
	// NoticeActionFailed: a lifecycle action failed; Notice.Failure says why.
	NoticeActionFailed NoticeKind = "action_failed"
	// NoticeExpiring: the guest's access ends soon; the sponsor may extend.
	NoticeExpiring NoticeKind = "expiring"
	// NoticeApprovalRequested: ask Notice.To (a channel or an approver) to
	// decide; the Notifier returns the message it posted.
	NoticeApprovalRequested NoticeKind = "approval_requested"
	// NoticeApprovalDecided: Invitation.Approval has the decision; tell the
	// inviter and update the posted requests.
	NoticeApprovalDecided NoticeKind = "approval_decided"
	// NoticeWritesAbandoned: writes to the guest that Entra refused were
	// retried until Invitation.Deferred gave up; Notice.Failure says which
	// (Op) and what Entra said.
	NoticeWritesAbandoned NoticeKind = "writes_abandoned"
	// NoticeWritesDone: the writes Invitation.Deferred retried went
	// through (the outcome DM is updated; nothing new is sent).
	NoticeWritesDone NoticeKind = "writes_done"
	// NoticeStepCompleted: the invitation ended; complete its workflow
	// step (Origin.Completes) with the outcome: success with the outputs
	// when notified, an error with the failure's reason when failed. A
	// completion Slack already took counts as delivered.
	NoticeStepCompleted NoticeKind = "step_completed"
)

// Notice is a domain message to the inviter. The Notifier (bot) renders it.
type Notice struct {
	Kind       NoticeKind
	Invitation *Invitation // a copy: the notifier may keep it
	RetryIn    time.Duration
	// Action, By and Failure describe a lifecycle action's outcome.
	Action  ActionKind
	By      string
	Failure *Failure
	To      string // NoticeApprovalRequested's recipient
	// ID names this notice, the same on every attempt to deliver it; the
	// Notifier attaches it to the messages it posts (as Slack message
	// metadata). Empty for notices that post nothing (dialog updates).
	ID string
	// Recover is set when an earlier attempt may have posted the notice
	// and died before it was recorded (a crash, or another replica that
	// lost its lease): the Notifier then looks for a message carrying ID in
	// the conversation's recent history before posting it again.
	Recover bool
}

// Final reports whether the notice must be delivered (retried), not only
// attempted.
func (n Notice) Final() bool {
	return n.Kind != NoticeProgress && n.Kind != NoticeRetrying && n.Kind != NoticeMatches
}

// Notifier tells the inviter about their invitation.
type Notifier interface {
	// Notify delivers n. For NoticeDone it returns the DM it posted, so a
	// later notice can update it. An error means it may not have been
	// delivered.
	Notify(ctx context.Context, n Notice) (MessageRef, error)
}

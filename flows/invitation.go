package flows

import (
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// State is a step of an invitation's state machine. Every state change is
// written to the store before the side effect that follows it, so a restart
// resumes an invitation from its last recorded state.
//
//	requested → checking → (awaiting_pick) → (awaiting_sign_in) → inviting → invited
//	          → attributes_set → groups_added → provisioned → notified
//	          → accepted
//	any step → failed
//	notified, accepted → revoked (by a person) or removed (deleted in Entra)
//
// After notified the acceptance tracker polls the guest's
// externalUserState; resend and reset-redemption re-invite without leaving
// notified (reset also moves accepted back to notified).
type State string

// The states of an invitation, in the order a successful one passes them.
const (
	StateRequested State = "requested"
	// StateAwaitingApproval: the policy requires an approver's decision
	// before anything is sent to Entra.
	StateAwaitingApproval State = "awaiting_approval"
	StateChecking         State = "checking"
	StateAwaitingPick     State = "awaiting_pick"
	StateInviting         State = "inviting"
	StateInvited          State = "invited"
	StateAttributesSet    State = "attributes_set"
	StateGroupsAdded      State = "groups_added"
	StateProvisioned      State = "provisioned"
	StateNotified         State = "notified"
	StateAccepted         State = "accepted"
	StateFailed           State = "failed"
	StateRevoked          State = "revoked" // access removed by a person
	StateRemoved          State = "removed" // the user was deleted in Entra
)

// Terminal reports whether no further automatic step of the invitation
// itself follows s (acceptance tracking and lifecycle actions may).
func (s State) Terminal() bool {
	switch s {
	case StateNotified, StateAccepted, StateFailed, StateRevoked, StateRemoved:
		return true
	}
	return false
}

// Waiting reports whether s waits for a person (the inviter's pick, an
// approver, the inviter's sign-in) rather than for the bot.
func (s State) Waiting() bool {
	return s == StateAwaitingPick || s == StateAwaitingApproval || s == StateAwaitingSignIn
}

// Delivery says who delivers the redeem link to the invitee.
type Delivery string

const (
	// DeliverySlackLink suppresses Microsoft's email (sendInvitationMessage
	// false) and gives the inviter the redeem link in a Slack DM.
	DeliverySlackLink Delivery = "slack_link"
	// DeliveryMicrosoftEmail lets Microsoft send its invitation email.
	DeliveryMicrosoftEmail Delivery = "microsoft_email"
)

// UserType is the Entra user type the guest is created with.
type UserType string

// The user types Graph accepts in invitedUserType.
const (
	UserTypeGuest  UserType = "Guest"
	UserTypeMember UserType = "Member"
)

// Attributes are optional user properties written after the invitation
// (PATCH /users/{id}).
type Attributes struct {
	GivenName   string `json:"givenName,omitempty"`
	Surname     string `json:"surname,omitempty"`
	CompanyName string `json:"companyName,omitempty"`
	JobTitle    string `json:"jobTitle,omitempty"`
}

// IsZero reports whether no attribute is set.
func (a Attributes) IsZero() bool { return a == Attributes{} }

// Request is what the inviter asked for: the modal's fields.
type Request struct {
	Email       string     `json:"email"`
	DisplayName string     `json:"displayName,omitempty"`
	RedirectURL string     `json:"redirectUrl"`
	Delivery    Delivery   `json:"delivery"`
	Message     string     `json:"message,omitempty"`
	CC          string     `json:"cc,omitempty"`
	UserType    UserType   `json:"userType"`
	Groups      []string   `json:"groups,omitempty"` // Entra group object IDs
	Attributes  Attributes `json:"attributes,omitzero"`
	// ExpiresIn is how long the guest's access lasts after provisioning;
	// zero: it does not expire. Policy default, or the inviter's choice.
	ExpiresIn time.Duration `json:"expiresIn,omitempty"`
	// Justification is why the inviter needs the guest (asked for when the
	// policy requires approval).
	Justification string `json:"justification,omitempty"`
	// ConvertFrom is the object ID or UPN of an internal account to convert
	// to B2B with Email as its external address, keeping its object ID,
	// groups and app assignments. Set only by Service.Convert.
	ConvertFrom string `json:"convertFrom,omitempty"`
}

// Inviter identifies the Slack user who asked for an invitation.
type Inviter struct {
	TeamID string `json:"teamId"`
	UserID string `json:"userId"`
}

// DirectoryUser is a user found in the directory.
type DirectoryUser struct {
	ID                string   `json:"id"`
	DisplayName       string   `json:"displayName,omitempty"`
	Mail              string   `json:"mail,omitempty"`
	UserPrincipalName string   `json:"userPrincipalName,omitempty"`
	UserType          UserType `json:"userType,omitempty"`
	// ExternalUserState is "PendingAcceptance", "Accepted" or "" (null: not
	// an invited external user, or a self-service sign-up).
	ExternalUserState string `json:"externalUserState,omitempty"`
	// OnPremisesUserPrincipalName is set for accounts synced from on-premises
	// Active Directory (only read by Directory.User).
	OnPremisesUserPrincipalName string `json:"onPremisesUserPrincipalName,omitempty"`
}

// Failure records why an invitation stopped.
type Failure struct {
	Code FailureCode `json:"code"`
	// Message is Graph's own message, when Graph rejected the request.
	Message string `json:"message,omitempty"`
	// Step is the state the invitation was in when it failed.
	Step State `json:"step"`
	// Op is the directory operation that failed (e.g. "invite").
	Op string `json:"op,omitempty"`
	// Retryable reports whether trying again later may succeed.
	Retryable bool `json:"retryable"`
}

// FailureCode classifies a Failure; bot turns it into words.
type FailureCode string

// The failure codes.
const (
	FailForbidden       FailureCode = "forbidden"        // Graph 403: missing permission or invitations restricted
	FailRejected        FailureCode = "rejected"         // Graph 400: Graph's message says why
	FailThrottled       FailureCode = "throttled"        // 429 beyond the retry budget
	FailUnavailable     FailureCode = "unavailable"      // 5xx/timeouts beyond the retry budget
	FailNotFound        FailureCode = "not_found"        // object still missing after the replication budget
	FailInternalUser    FailureCode = "internal_user"    // address in one of the tenant's verified domains
	FailCancelled       FailureCode = "cancelled"        // the inviter closed the pick dialog
	FailNotify          FailureCode = "notify_failed"    // done in Entra, but Slack could not be told
	FailInternal        FailureCode = "internal"         // a bug or a store error
	FailCredential      FailureCode = "credential"       // the token service rejected the app's credential
	FailDenied          FailureCode = "denied"           // an approver denied it
	FailApprovalExpired FailureCode = "approval_expired" // nobody decided in time
	// FailConvertRefused: the internal account cannot be converted to B2B.
	FailConvertRefused FailureCode = "convert_refused"
	// FailNeedsPick: a bulk row's address matches accounts a person must
	// choose between (Message says which).
	FailNeedsPick FailureCode = "needs_pick"
)

// Event is one entry of an invitation's history and of the audit log.
type Event struct {
	At           time.Time `json:"at"`
	InvitationID string    `json:"invitationId"`
	ObjectID     string    `json:"objectId,omitempty"`
	Actor        string    `json:"actor"` // Slack user ID, or "invitebot"
	Action       string    `json:"action"`
	Detail       string    `json:"detail,omitempty"`
}

// ActorBot is the Event actor for steps the bot takes on its own.
const ActorBot = "invitebot"

// Invitation is the durable record of one invitation request, keyed by ID
// until the guest has an Entra object ID.
type Invitation struct {
	ID string `json:"id"`
	// Origin is where the invitation came from (a dialog, a bulk file's
	// row, a conversion, a workflow step): it keys duplicates and decides
	// whom the outcome is reported to.
	Origin Origin `json:"origin"`
	// Runner is the replica running the invitation's work, when several
	// share the store; "" when none does (see replica.go).
	Runner  string  `json:"runner,omitempty"`
	Inviter Inviter `json:"inviter"`
	Request Request `json:"request"`
	State   State   `json:"state"`

	// Matches are the existing directory users shown to the inviter.
	Matches []DirectoryUser `json:"matches,omitempty"`
	// Picked is true when the inviter chose an existing user.
	Picked bool `json:"picked,omitempty"`

	ObjectID      string `json:"objectId,omitempty"`
	InviteAttempt int    `json:"inviteAttempt,omitempty"` // POST /invitations attempts, counted before each
	// UserType is the account's type as Graph answered the invitation
	// (invitedUserType); "" before it, and for records written before it
	// was kept: Request.UserType is what was asked.
	UserType UserType `json:"userType,omitempty"`
	// RedeemURL is the invitation redemption link. It is a bearer credential:
	// it is kept only in the store, shown only to the inviter (or DMed to the
	// invitee) and never logged (see LogValue).
	RedeemURL   string   `json:"redeemUrl,omitempty"`
	GroupsAdded []string `json:"groupsAdded,omitempty"`

	Failure *Failure `json:"failure,omitempty"`
	History []Event  `json:"history,omitempty"`

	// InvitedAt is when the current redeem link was issued (invitation,
	// resend or reset); zero for a picked existing account.
	InvitedAt time.Time `json:"invitedAt,omitzero"`
	// DM is the outcome message sent to the inviter, updated on acceptance.
	DM MessageRef `json:"dm,omitzero"`
	// Tracking is the acceptance state last read from Entra.
	Tracking Tracking `json:"tracking,omitzero"`
	// Action is the lifecycle action in progress (resend, reset, revoke);
	// one at a time, so concurrent clicks do one thing.
	Action *Action `json:"action,omitempty"`
	// Expiry is when the guest's access ends, if it does.
	Expiry *Expiry `json:"expiry,omitempty"`
	// Sponsor is the inviter as the guest's sponsor, once recorded.
	Sponsor *Sponsor `json:"sponsor,omitempty"`
	// SponsorDue is set when the guest is provisioned and cleared when the
	// sponsor is recorded, after the inviter's DM (off its critical path).
	SponsorDue bool `json:"sponsorDue,omitempty"`
	// Approval is the approval the policy asked for, if any.
	Approval *Approval `json:"approval,omitempty"`
	// Deferred are writes to the guest (attributes, sponsor) that Entra
	// refused with 403 and that are retried in the background.
	Deferred *Deferred `json:"deferred,omitempty"`
	// Outbox holds notices recorded with the change that caused them and
	// not yet delivered: each is delivered at least once, and recorded only
	// once per change.
	Outbox []Outgoing `json:"outbox,omitempty"`

	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Clone returns a deep copy of inv.
func (inv *Invitation) Clone() *Invitation {
	c := *inv
	c.Request.Groups = slices.Clone(inv.Request.Groups)
	c.Matches = slices.Clone(inv.Matches)
	c.GroupsAdded = slices.Clone(inv.GroupsAdded)
	c.History = slices.Clone(inv.History)
	c.Outbox = slices.Clone(inv.Outbox)
	if inv.Action != nil {
		a := *inv.Action
		c.Action = &a
	}
	if inv.Expiry != nil {
		x := *inv.Expiry
		c.Expiry = &x
	}
	if inv.Approval != nil {
		a := *inv.Approval
		a.Approvers = slices.Clone(a.Approvers)
		a.Messages = slices.Clone(a.Messages)
		a.Approved = maps.Clone(a.Approved)
		c.Approval = &a
	}
	if inv.Failure != nil {
		f := *inv.Failure
		c.Failure = &f
	}
	if inv.Deferred != nil {
		d := *inv.Deferred
		c.Deferred = &d
	}
	if inv.Sponsor != nil {
		sp := *inv.Sponsor
		c.Sponsor = &sp
	}
	return &c
}

// MessageRef addresses a posted Slack message.
type MessageRef struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
}

// External user states as Graph reports them, plus TrackNone for null.
const (
	ExternalPending  = "PendingAcceptance"
	ExternalAccepted = "Accepted"
	// TrackNone records that Graph reported null: not an invitation that can
	// be accepted (e.g. a self-service sign-up guest). Not tracked further.
	TrackNone = "none"
)

// Tracking is what the acceptance tracker knows about the guest.
type Tracking struct {
	// External is the last externalUserState read ("" until the first read).
	External   string    `json:"external,omitempty"`
	AcceptedAt time.Time `json:"acceptedAt,omitzero"`
	// MissingSince is when the tracker first got a 404 for the guest; a 404
	// that persists past the grace period means the guest was deleted.
	MissingSince time.Time `json:"missingSince,omitzero"`
	RemindedAt   time.Time `json:"remindedAt,omitzero"`
	Resends      int       `json:"resends,omitempty"`
	// ResetAt is when the redemption was last reset (equal to InvitedAt
	// until the next resend).
	ResetAt time.Time `json:"resetAt,omitzero"`
}

// ActionKind is a lifecycle action on an invitation.
type ActionKind string

// The lifecycle actions.
const (
	ActionResend       ActionKind = "resend"        // re-invite the same address: fresh link or email
	ActionReset        ActionKind = "reset"         // resetRedemption: the guest must redeem again (admin)
	ActionRevokeGroups ActionKind = "revoke_groups" // remove from the groups invitebot added
	ActionDelete       ActionKind = "delete"        // delete the guest user (admin)
	// ActionExpire ends access when the expiry date passes (invitebot's
	// own action): remove the groups invitebot added, or disable sign-in.
	ActionExpire ActionKind = "expire"
)

// AdminOnly reports whether only admins may take the action.
func (k ActionKind) AdminOnly() bool { return k == ActionReset || k == ActionDelete }

// Action is a lifecycle action in progress.
type Action struct {
	Kind ActionKind `json:"kind"`
	By   string     `json:"by"` // Slack user ID
	At   time.Time  `json:"at"`
}

// Outgoing is a notice waiting in an invitation's outbox.
type Outgoing struct {
	Kind NoticeKind `json:"kind"`
	At   time.Time  `json:"at"`
	// Action and Failure describe a lifecycle action's outcome.
	Action  ActionKind `json:"action,omitempty"`
	By      string     `json:"by,omitempty"`
	Failure *Failure   `json:"failure,omitempty"`
	// To is the approval request's recipient: a channel or an approver.
	To string `json:"to,omitempty"`
}

// noticeID names the notice o of invitation id: the same on every attempt
// to deliver it, different for every notice recorded.
func (o Outgoing) noticeID(id string) string {
	n := id + "/" + string(o.Kind) + "/" + strconv.FormatInt(o.At.UnixNano(), 36)
	if o.To != "" {
		n += "/" + o.To
	}
	return n
}

// ExpiryAction is what happens to a guest's access when it expires.
type ExpiryAction string

// The expiry actions.
const (
	ExpireRemoveGroups ExpiryAction = "remove_groups" // remove from the groups invitebot added
	ExpireDisable      ExpiryAction = "disable"       // block sign-in (accountEnabled false)
)

// Expiry is a guest's access end date and what the sponsor said about it.
type Expiry struct {
	At     time.Time     `json:"at"`
	Period time.Duration `json:"period"` // what Extend adds
	// WarnedAt is when the sponsor was asked to extend or let it expire.
	WarnedAt  time.Time `json:"warnedAt,omitzero"`
	LetExpire bool      `json:"letExpire,omitempty"`
	// Failures counts failed attempts to end the access.
	Failures int `json:"failures,omitempty"`
}

// MaxExpiryFailures is how many times invitebot tries to end an access
// before it leaves it to a person (each failure is DMed to the sponsor).
const MaxExpiryFailures = 3

// Sponsor is who is responsible for a guest: the inviter, in Slack and,
// where it could be mapped and the tenant supports it, in Entra (the
// user's sponsors relationship).
type Sponsor struct {
	SlackUser string `json:"slackUser"`
	Email     string `json:"email,omitempty"`    // the inviter's Slack email
	ObjectID  string `json:"objectId,omitempty"` // their Entra account
	InEntra   bool   `json:"inEntra"`            // the sponsors relationship is set
	Note      string `json:"note,omitempty"`     // why not, if not
}

// Approval is an invitation's approval: who may decide, and the decision.
type Approval struct {
	Approvers   []string  `json:"approvers"` // Slack user IDs; one decides
	RequestedAt time.Time `json:"requestedAt"`
	ExpiresAt   time.Time `json:"expiresAt"`
	// Decision is "" while pending, else one of the Decision* values.
	Decision  string    `json:"decision,omitempty"`
	DecidedBy string    `json:"decidedBy,omitempty"`
	DecidedAt time.Time `json:"decidedAt,omitzero"`
	Reason    string    `json:"reason,omitempty"` // the approver's, on deny
	// Approved maps each approval stage's name to who approved it.
	Approved map[string]string `json:"approved,omitempty"`
	// Messages are the posted requests, updated once decided.
	Messages []ApprovalMessage `json:"messages,omitempty"`
}

// The approval decisions.
const (
	DecisionApproved = "approved"
	DecisionDenied   = "denied"
	DecisionExpired  = "expired"
)

// ApprovalMessage is an approval request posted to To.
type ApprovalMessage struct {
	To  string     `json:"to"`
	Ref MessageRef `json:"ref"`
}

// Pending reports whether the invitation waits for the guest to accept:
// notified, and Entra has not reported Accepted or null.
func (inv *Invitation) Pending() bool {
	return inv.State == StateNotified && inv.ObjectID != "" &&
		inv.Tracking.External != ExternalAccepted && inv.Tracking.External != TrackNone
}

// LogValue implements slog.LogValuer. It omits the redeem link, the message
// and the guest's full address: only the domain is logged.
func (inv *Invitation) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", inv.ID),
		slog.String("state", string(inv.State)),
		slog.String("object_id", inv.ObjectID),
		slog.String("guest_domain", Domain(inv.Request.Email)),
		slog.String("inviter", inv.Inviter.UserID),
	)
}

// Guest is a provisioned guest in invitebot's own store, keyed by Entra
// object ID (the immutable ID).
type Guest struct {
	ObjectID     string    `json:"objectId"`
	Email        string    `json:"email"`
	DisplayName  string    `json:"displayName,omitempty"`
	UserType     UserType  `json:"userType"`
	InvitedBy    Inviter   `json:"invitedBy"`
	Groups       []string  `json:"groups,omitempty"`
	RedirectURL  string    `json:"redirectUrl,omitempty"`
	Delivery     Delivery  `json:"delivery"`
	State        State     `json:"state"`
	Existing     bool      `json:"existing,omitempty"` // picked from the directory, not invited
	InvitationID string    `json:"invitationId"`
	Sponsor      *Sponsor  `json:"sponsor,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// NormalizeEmail returns the key under which an address is deduplicated.
func NormalizeEmail(email string) string {
	return strings.ToLower(strings.TrimSpace(email))
}

// Domain returns the lower-cased domain of an address, or "".
func Domain(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(email[at+1:])
}

package flows

import (
	"log/slog"
	"slices"
)

// OriginKind says what started an invitation.
type OriginKind string

// The origins of invitations.
const (
	// OriginDialog: the /invite-guest dialog. Key is the Slack view ID of
	// the submission; the dialog shows progress, the pick and the outcome.
	OriginDialog OriginKind = "dialog"
	// OriginBulk: a row of a bulk CSV file. Key is "<row key>:<inviter>:
	// <attempt>"; Name is the file and line ("guests.csv line 7"). The run
	// reports the outcome in its results.
	OriginBulk OriginKind = "bulk"
	// OriginConvert: an admin's conversion of an internal account to B2B.
	// It has no Key; the admin is told the outcome by DM.
	OriginConvert OriginKind = "convert"
	// OriginWorkflow: a Slack Workflow Builder step. Key is the step's
	// function_execution_id, which is completed with the outcome.
	OriginWorkflow OriginKind = "workflow"
)

// Origin is where an invitation came from, stored with it. It decides, in
// one place, whether a submission repeats an earlier one (Key), whether a
// dialog shows the invitation's progress, and whom its outcome is told to
// and how.
type Origin struct {
	Kind OriginKind `json:"kind"`
	// Key makes a submission idempotent: a store keeps at most one
	// invitation per Kind and Key (see UniqueKey). "" : no key.
	Key string `json:"key,omitempty"`
	// Name says where, for people (the audit log, results): a bulk file's
	// name and line, a workflow step's workflow execution ID.
	Name string `json:"name,omitempty"`
	// Token is a workflow step's workflow token, which its completion is
	// sent with: a credential, kept only in the store, never logged or
	// shown.
	Token string `json:"token,omitempty"`
}

// UniqueKey is the key under which a store keeps o unique: kind and key,
// or "" when o has no key (nothing to deduplicate).
func (o Origin) UniqueKey() string {
	if o.Key == "" {
		return ""
	}
	return string(o.Kind) + ":" + o.Key
}

// Repeats reports whether o is the same submission as other (a re-delivery
// or a double click): both have the same kind and key.
func (o Origin) Repeats(other Origin) bool {
	return o.Key != "" && o.UniqueKey() == other.UniqueKey()
}

// Dialog reports whether a dialog follows the invitation: it gets the
// progress notices, the pick among existing accounts and the outcome.
func (o Origin) Dialog() bool { return o.Kind == OriginDialog }

// PicksMatches reports whether a person picks among existing accounts that
// match the address. Otherwise (a bulk row, a workflow step) the one
// exact guest match is adopted and anything else fails, naming the
// matches.
func (o Origin) PicksMatches() bool { return o.Kind == OriginDialog }

// Batch reports whether the invitation is one of many sent by one run that
// reports their outcomes itself: its DMs are paced, a failure is not DMed
// and the inviter's Home tab is refreshed once per run, not per invitation.
func (o Origin) Batch() bool { return o.Kind == OriginBulk }

// TellsDone reports whether the inviter gets the outcome DM once inv is
// provisioned. A batch row sends one only to forward a redeem link.
func (o Origin) TellsDone(inv *Invitation) bool {
	return !o.Batch() || inv.Request.Delivery == DeliverySlackLink && inv.RedeemURL != ""
}

// TellsFailure reports whether the inviter is DMed when the invitation
// fails.
func (o Origin) TellsFailure() bool { return !o.Batch() }

// RefreshesHome reports whether the inviter's Home tab is re-published
// when the invitation ends.
func (o Origin) RefreshesHome() bool { return !o.Batch() }

// LogValue implements slog.LogValuer: a workflow token is never logged.
func (o Origin) LogValue() slog.Value {
	return slog.GroupValue(slog.String("kind", string(o.Kind)), slog.String("key", o.Key), slog.String("name", o.Name))
}

// Completes reports whether the origin waits for the invitation's outcome
// (a workflow step, completed once the invitation ends): see
// NoticeStepCompleted.
func (o Origin) Completes() bool { return o.Kind == OriginWorkflow }

// String says where the invitation came from, for people (the Home tab):
// "dialog", "bulk file guests.csv line 7", "conversion",
// "workflow Wx…, step Fx…".
func (o Origin) String() string {
	switch o.Kind {
	case OriginBulk:
		return "bulk file " + o.Name
	case OriginConvert:
		return "conversion"
	case OriginWorkflow:
		return "workflow " + o.Name + ", step " + o.Key
	}
	return "dialog"
}

// detail is what the audit log's "requested" event adds about o.
func (o Origin) detail() string {
	switch {
	case o.Kind == OriginDialog:
		return " from=dialog"
	case o.Kind == OriginWorkflow:
		return " workflow=" + o.Name + " step=" + o.Key
	case o.Name == "":
		return ""
	}
	return " " + string(o.Kind) + "=" + o.Name
}

// InvitationFilter selects invitations for Store.Invitations. Every field
// that is set must hold; the zero filter selects every invitation. Each
// field can be answered from an index (see the Store documentation).
type InvitationFilter struct {
	// OriginKind keeps the invitations whose Origin.Kind it is; with
	// OriginKey too, the one from that origin.
	OriginKind OriginKind
	OriginKey  string
	// Inviter keeps the invitations of this Slack user ID.
	Inviter string
	// Emails keeps the invitations for any of these addresses (compared
	// normalised, see NormalizeEmail).
	Emails []string
	// States keeps the invitations in any of these states.
	States []State
	// Unfinished keeps the invitations whose state is not Terminal (at
	// most one per address: the address's invitation in flight).
	Unfinished bool
	// Tracked keeps the invitations Tracked reports true for.
	Tracked bool
	// SponsorDue keeps the invitations whose sponsor is still to be
	// recorded (Invitation.SponsorDue).
	SponsorDue bool
	// Limit, if positive, keeps only the Limit most recently created of
	// the selected invitations.
	Limit int
}

// Match reports whether inv passes every condition of f but Limit. Stores
// may use it; they must select exactly what it selects.
func (f InvitationFilter) Match(inv *Invitation) bool {
	switch {
	case f.OriginKind != "" && inv.Origin.Kind != f.OriginKind,
		f.OriginKey != "" && inv.Origin.Key != f.OriginKey,
		f.Inviter != "" && inv.Inviter.UserID != f.Inviter,
		len(f.States) > 0 && !slices.Contains(f.States, inv.State),
		f.Unfinished && inv.State.Terminal(),
		f.Tracked && !inv.Tracked(),
		f.SponsorDue && !inv.SponsorDue:
		return false
	}
	if len(f.Emails) > 0 {
		email := NormalizeEmail(inv.Request.Email)
		return slices.ContainsFunc(f.Emails, func(e string) bool { return NormalizeEmail(e) == email })
	}
	return true
}

// Tracked reports whether the background cycle (Service.Track) looks at
// inv: its guest's acceptance is pending, a notice waits in its outbox, a
// lifecycle action is in progress, it waits for an approver, its guest's
// access has an expiry, or writes Entra refused are retried (Deferred). It
// depends only on the record, so a store may compute it on each write and
// index it; changing what it selects means rebuilding those indexes
// (bbolt: a new schema version). Adding Deferred needed none: no record
// written before it has one.
func (inv *Invitation) Tracked() bool {
	return inv.Pending() || len(inv.Outbox) > 0 || inv.Action != nil || inv.State == StateAwaitingApproval ||
		(inv.Expiry != nil && live(inv)) || inv.Deferred.Active()
}

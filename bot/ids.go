package bot

// Slack identifiers. The command, the callback ID invite_guest and the input
// block IDs are part of invitebot's contract (DESIGN.md): a dialog opened
// before a deploy is submitted to the version after it, so they never change.
const (
	// Command is the slash command, as declared in manifest/manifest.yaml.
	Command = "/invite-guest"

	// CallbackInvite is the invitation dialog.
	CallbackInvite = "invite_guest"
	// CallbackStatus is the dialog while the invitation runs and after.
	CallbackStatus = "invite_guest_status"
	// CallbackPick is the dialog that shows existing directory matches.
	CallbackPick = "invite_guest_pick"

	// Input block IDs of the invitation dialog; each element's action_id
	// equals its block_id.
	BlockEmail       = "email"
	BlockDisplayName = "display_name"
	BlockRedirectURL = "redirect_url"
	BlockDelivery    = "delivery"
	BlockMessage     = "message"
	BlockCC          = "cc"
	BlockUserType    = "user_type"
	BlockGroups      = "groups"
	BlockGivenName   = "given_name"
	BlockSurname     = "surname"
	BlockCompanyName = "company_name"
	BlockJobTitle    = "job_title"
	// BlockJustification is shown when the policy has approvals.
	BlockJustification = "justification"
	// BlockExpiresIn is the access period select.
	BlockExpiresIn = "expires_in"

	// BlockPick is the radio group of the pick dialog.
	BlockPick = "pick"
	// PickNew is the pick value that means "none of these: invite as new".
	PickNew = "new"

	// ActionDMInvitee is the button that sends the invitation to the
	// invitee's own Slack DM.
	ActionDMInvitee = "dm_invitee"

	// Lifecycle actions: buttons on DMs (value: invitation ID) and options
	// of the Home tab's overflow menus (value: "<action_id>:<invitation ID>").
	ActionResend   = "resend"
	ActionRevoke   = "revoke"
	ActionReset    = "reset_redemption"
	ActionDelete   = "delete_guest"
	ActionOverflow = "invitation_actions"
	// ActionConvertOpen is the Home tab button that opens the convert dialog.
	ActionConvertOpen = "convert_open"
	// ActionConnect is the "Connect your Microsoft account" link button;
	// ActionDisconnect is the Home tab button that removes the connection.
	ActionConnect    = "signin_connect"
	ActionDisconnect = "signin_disconnect"
	// BlockInvitationActions is the actions block on DMs.
	BlockInvitationActions = "invitation_actions"

	// CallbackConfirmDelete is the dialog that confirms deleting a guest.
	CallbackConfirmDelete = "confirm_delete_guest"
	// BlockConfirm is its only block.
	BlockConfirm = "confirm"
	// CallbackConvert is the dialog that converts an internal user to B2B;
	// its blocks are BlockConvertAccount and BlockEmail.
	CallbackConvert     = "convert_user"
	BlockConvertAccount = "account"

	// Approvals: the buttons on an approval request (value: invitation ID)
	// and the dialog that asks a denying approver for the reason.
	ActionApprove = "approve_invitation"
	ActionDeny    = "deny_invitation"
	CallbackDeny  = "deny_invitation"
	BlockReason   = "reason"

	// Expiry: the buttons on the sponsor's reminder (value: invitation ID).
	ActionExtend    = "extend_access"
	ActionLetExpire = "let_expire"
)

// Scopes are the bot token scopes the code uses; manifest/manifest.yaml
// must ask for exactly these (checked by a test).
var Scopes = []string{
	"commands",         // /invite-guest
	"chat:write",       // DMs to inviters and invitees
	"im:write",         // conversations.open for those DMs
	"im:history",       // conversations.history: was a notice already DMed before a crash? (no message twice)
	"users:read",       // users.info: the inviter's name in the invitation text
	"users:read.email", // users.lookupByEmail: is the invitee in Slack?
	"files:write",      // files upload v2: /invite-guest audit's CSV file in the admin's DM, bulk results
	"files:read",       // files.info and the download of a CSV shared for bulk invitations
	"usergroups:read",  // usergroups.users.list: user groups named in the policy file
}

// Events are the Events API events the bot handles; manifest/manifest.yaml
// subscribes to exactly these (checked by a test).
var Events = []string{
	"app_home_opened",   // render the Home tab
	"file_shared",       // a CSV shared in a DM with the bot: bulk invitations
	"function_executed", // a workflow reached the Workflow Builder step
	"user_change",       // a person's profile changed: drop their cached name and email
}

// The Workflow Builder step (DESIGN.md "Slack Workflow Builder step"): its
// callback ID, input and output names, as manifest/manifest.yaml declares
// them (checked by a test).
const (
	// FunctionInvite is the step's callback ID.
	FunctionInvite = "invite_external_guest"

	// StepRequester is the slack#/types/user_context input: the person the
	// policy is applied to. The other inputs are strings.
	StepRequester     = "requester"
	StepEmail         = "email"
	StepDisplayName   = "display_name"
	StepMessage       = "message"
	StepGroups        = "groups" // names or object IDs separated by ";"
	StepDelivery      = "delivery"
	StepJustification = "justification"

	// Outputs (strings); StepEmail is also an output.
	StepObjectID = "object_id"
	StepOutcome  = "outcome" // "invited" or "existing"
)

// StepInputs and StepOutputs are the step's parameters; the first two
// inputs are required, every output is set.
var (
	StepInputs  = []string{StepRequester, StepEmail, StepDisplayName, StepMessage, StepGroups, StepDelivery, StepJustification}
	StepOutputs = []string{StepObjectID, StepEmail, StepOutcome}
)

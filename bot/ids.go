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

	// BlockPick is the radio group of the pick dialog.
	BlockPick = "pick"
	// PickNew is the pick value that means "none of these: invite as new".
	PickNew = "new"

	// ActionDMInvitee is the button that sends the invitation to the
	// invitee's own Slack DM.
	ActionDMInvitee = "dm_invitee"
)

// Scopes are the bot token scopes the code uses; manifest/manifest.yaml
// must ask for exactly these (checked by a test).
var Scopes = []string{
	"commands",         // /invite-guest
	"chat:write",       // DMs to inviters and invitees
	"im:write",         // conversations.open for those DMs
	"users:read",       // users.info: the inviter's name in the invitation text
	"users:read.email", // users.lookupByEmail: is the invitee in Slack?
}

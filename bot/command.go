package bot

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// viewsOpenTimeout bounds views.open: the trigger_id expires 3 s after the
// user ran the command, so waiting longer cannot help.
const viewsOpenTimeout = 2500 * time.Millisecond

// HelpText is the /invite-guest help shown to users.
const HelpText = "*/invite-guest* opens a dialog to invite an external collaborator into our Microsoft Entra tenant as a B2B guest.\n" +
	"• `/invite-guest` — open the dialog\n" +
	"• `/invite-guest bob@contoso.com Bob Smith` — open it pre-filled\n" +
	"• `/invite-guest help` — this text\n" +
	"• `/invite-guest connect` / `disconnect` — connect your Microsoft account, so that invitations are sent as you (when invitebot is set up for it), or remove it\n" +
	"• `/invite-guest convert user@ourcompany.com user@partner.com` — (admins) convert an internal account to B2B, keeping its object ID, groups and apps\n" +
	"• `/invite-guest audit [days]` — (admins) the audit log of the last days (default 30) as a CSV file in your DM\n" +
	"• Many guests at once: send invitebot a CSV file in your DM with it (columns `email`, `display name`, `redirect url`, `send microsoft email`, `message`, `groups`); it replies with progress and a results file\n" +
	"• In Workflow Builder: add the step *Invite an external guest* (from invitebot) to a workflow and set *Requested by* to the person who used the workflow; the same rules apply to them, and the step outputs the guest's object ID, email and outcome\n" +
	"Your invitations, with Resend and Revoke, are on invitebot's *Home* tab.\n" +
	"invitebot checks the directory for an existing account first, then invites, adds the guest to the groups you chose and DMs you the result."

// ParseCommandText reads "/invite-guest [email] [display name…]".
func ParseCommandText(text string) Prefill {
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return Prefill{}
	}
	var p Prefill
	if strings.Contains(fields[0], "@") {
		p.Email = strings.Trim(fields[0], "<>")
		// Slack may send an address as a mailto link: <mailto:a@b|a@b>.
		if i := strings.IndexByte(p.Email, '|'); i >= 0 {
			p.Email = p.Email[i+1:]
		}
		p.Email = strings.TrimPrefix(p.Email, "mailto:")
		fields = fields[1:]
	}
	p.DisplayName = strings.Join(fields, " ")
	return p
}

// command answers a slash command. It opens the dialog before returning, so
// the trigger_id is used within its 3 seconds and before any Graph or store
// work. It returns the response body (nil: empty 200).
func (b *Bot) command(ctx context.Context, cmd slack.SlashCommand) any {
	if b.foreign(cmd.TeamID, cmd.EnterpriseID, cmd.APIAppID) {
		b.log.WarnContext(ctx, "refused a command for another workspace or app", "team", cmd.TeamID, "app", cmd.APIAppID)
		return ephemeral("invitebot is not installed for this workspace.")
	}
	if cmd.Command != Command {
		return ephemeral("Unknown command " + Escape(cmd.Command) + ".")
	}
	text := strings.TrimSpace(cmd.Text)
	if text == "help" {
		return ephemeral(HelpText)
	}
	if f := strings.Fields(text); len(f) > 0 && f[0] == "convert" {
		return b.convertCommand(ctx, cmd, f[1:])
	}
	if f := strings.Fields(text); len(f) > 0 && f[0] == "audit" {
		return b.auditCommand(ctx, cmd, f[1:])
	}
	if text == "connect" || text == "disconnect" {
		return b.signInCommand(ctx, cmd.UserID, text)
	}
	p := b.svc.Policy()
	if !p.MayInvite(cmd.UserID) {
		return ephemeral("You are not among the people allowed to invite guests. Ask an invitebot admin.")
	}
	modal := InviteModal(ParseCommandText(text), p, p.IsAdmin(cmd.UserID))
	octx, cancel := context.WithTimeout(detach(ctx), viewsOpenTimeout)
	defer cancel()
	if _, err := b.api.OpenViewContext(octx, cmd.TriggerID, modal); err != nil {
		b.log.WarnContext(ctx, "views.open", "user", cmd.UserID, "err", err)
		var se slack.SlackErrorResponse
		if errors.As(err, &se) && (se.Err == "expired_trigger_id" || se.Err == "exchanged_trigger_id") {
			return ephemeral("Slack took too long to open the dialog. Please run /invite-guest again.")
		}
		return ephemeral("Could not open the invitation dialog (Slack said: " + Escape(err.Error()) + "). Please try again.")
	}
	return nil
}

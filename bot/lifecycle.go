package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// lifecycleNotice renders the notices that follow an invitation: the
// guest accepted, was deleted in Entra, a reminder, and the outcome of
// resend / reset / revoke / delete. The inviter gets a DM; for an accepted
// or revoked guest the original DM is updated too (its link and buttons no
// longer apply), and the Home tabs concerned are refreshed.
func (b *Bot) lifecycleNotice(ctx context.Context, n flows.Notice) error {
	inv := n.Invitation
	r := inv.Request
	who := guestName(inv)
	var (
		text   string
		blocks []slack.Block
		to     = inv.Inviter.UserID
	)
	switch n.Kind {
	case flows.NoticeAccepted:
		text = fmt.Sprintf(":tada: %s accepted your invitation", who)
		if !inv.InvitedAt.IsZero() && inv.Tracking.AcceptedAt.After(inv.InvitedAt) {
			text += " — " + flows.Age(inv.Tracking.AcceptedAt.Sub(inv.InvitedAt)) + " after you sent it"
		}
		text += "."
	case flows.NoticeRemoved:
		text = fmt.Sprintf(":wastebasket: %s was deleted from Microsoft Entra (not by invitebot). invitebot no longer tracks this invitation.", who)
	case flows.NoticeReminder:
		text = fmt.Sprintf(":hourglass: %s has not accepted your invitation yet (sent %s ago).", who, flows.Age(time.Since(sentAt(inv))))
		blocks = []slack.Block{section(text)}
		if btns := actionButtons(inv, false); len(btns) > 0 {
			blocks = append(blocks, slack.NewActionBlock(BlockInvitationActions, btns...))
		}
	case flows.NoticeExpiring:
		text = fmt.Sprintf(":hourglass: The access of %s, whom you sponsor, ends %s.", who, inv.Expiry.At.UTC().Format("Mon 2 Jan 2006"))
		extend := slack.NewButtonBlockElement(ActionExtend, inv.ID, plain("Extend by "+days(inv.Expiry.Period)))
		extend.Style = slack.StylePrimary
		blocks = []slack.Block{section(text), slack.NewActionBlock("expiry", extend,
			slack.NewButtonBlockElement(ActionLetExpire, inv.ID, plain("Let it expire"))), note("Invitation `" + inv.ID + "`")}
	case flows.NoticeActionDone:
		text, blocks = b.actionDoneMessage(ctx, inv, n)
	case flows.NoticeWritesAbandoned:
		text = writesAbandonedText(inv, n.Failure, who)
	case flows.NoticeWritesDone:
		// Nothing new to say: the outcome DM no longer shows them pending.
		if inv.DM.TS != "" {
			b.updateResultDM(ctx, inv)
		}
		return nil
	case flows.NoticeActionFailed:
		text = fmt.Sprintf(":x: Could not %s for %s: %s", actionVerb(n.Action), who, FailureText(n.Failure))
		if n.By != flows.ActorBot { // invitebot's own actions (expiry) are reported to the sponsor
			to = firstNonEmpty(n.By, to)
		}
	default:
		return fmt.Errorf("notify: unknown notice kind %q", n.Kind)
	}
	if blocks == nil {
		blocks = []slack.Block{section(text), note("Invitation `" + inv.ID + "` · " + Escape(r.Email))}
	}
	if _, err := b.dm(ctx, to, slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...)); err != nil {
		return classify(fmt.Errorf("dm: %w", err))
	}
	if n.By != "" && n.By != to && n.Kind == flows.NoticeActionDone {
		// An admin acted on someone else's invitation: confirm to them too.
		confirm := fmt.Sprintf(":white_check_mark: Done: %s for %s (invited by <@%s>).", actionVerb(n.Action), who, inv.Inviter.UserID)
		if _, err := b.dm(ctx, n.By, slack.MsgOptionText(confirm, false)); err != nil {
			b.log.WarnContext(ctx, "dm admin", "invitation", inv, "err", err)
		}
	}
	if inv.DM.TS != "" && (n.Kind != flows.NoticeReminder && n.Kind != flows.NoticeActionFailed) {
		b.updateResultDM(ctx, inv)
	}
	if n.Kind == flows.NoticeActionDone || n.Kind == flows.NoticeActionFailed {
		b.refreshHomes(ctx, inv.Inviter.UserID, n.By) // a person's own action: shown at once
	} else {
		b.homeChanged(inv.Inviter.UserID)
	}
	return nil
}

// actionDoneMessage renders the outcome of a lifecycle action for the
// inviter. A resend or reset with the Slack delivery carries the fresh link.
func (b *Bot) actionDoneMessage(ctx context.Context, inv *flows.Invitation, n flows.Notice) (string, []slack.Block) {
	who := guestName(inv)
	p := b.svc.Policy()
	by := ""
	if n.By != "" && n.By != inv.Inviter.UserID {
		by = " (by <@" + n.By + ">)"
	}
	switch n.Action {
	case flows.ActionResend, flows.ActionReset:
		what := "Invitation sent again"
		if n.Action == flows.ActionReset {
			what = "Redemption reset: the guest must accept again"
		}
		text := fmt.Sprintf(":arrows_counterclockwise: %s for %s%s.", what, who, by)
		blocks := []slack.Block{section(text)}
		if inv.Request.Delivery == flows.DeliveryMicrosoftEmail {
			blocks = append(blocks, note("Microsoft emailed the invitation again from invites@microsoft.com."))
		} else {
			blocks = append(blocks, b.linkBlocks(ctx, inv, true)...)
		}
		return text, append(blocks, note("Invitation `"+inv.ID+"`"))
	case flows.ActionRevokeGroups:
		names := make([]string, len(inv.GroupsAdded))
		for i, g := range inv.GroupsAdded {
			names[i] = Escape(p.GroupName(g))
		}
		return fmt.Sprintf(":no_entry: %s was removed from %s%s. The account itself still exists.", who, strings.Join(names, ", "), by), nil
	case flows.ActionDelete:
		return fmt.Sprintf(":no_entry: %s was deleted from Microsoft Entra%s (it stays in the recycle bin for 30 days).", who, by), nil
	case flows.ActionExpire:
		what := "removed from the groups invitebot added"
		if p.ExpiryAction == flows.ExpireDisable {
			what = "blocked from signing in"
		}
		return fmt.Sprintf(":hourglass: The access of %s expired: they were %s.", who, what), nil
	}
	return fmt.Sprintf("Done: %s for %s.", actionVerb(n.Action), who), nil
}

// updateResultDM rewrites the original outcome DM to the invitation's
// current state: once accepted, revoked or removed its link and buttons go.
func (b *Bot) updateResultDM(ctx context.Context, inv *flows.Invitation) {
	mu := b.dmLock(inv.ID)
	mu.Lock()
	defer mu.Unlock()
	blocks, fallback, _ := b.resultMessage(ctx, inv, true)
	_, _, _, err := b.api.UpdateMessageContext(ctx, inv.DM.Channel, inv.DM.TS,
		slack.MsgOptionText(fallback, false), slack.MsgOptionBlocks(blocks...))
	if err != nil {
		b.log.WarnContext(ctx, "update outcome DM", "invitation", inv, "err", err)
	}
}

func guestName(inv *flows.Invitation) string {
	r := inv.Request
	if r.DisplayName != "" {
		return fmt.Sprintf("*%s* (%s)", Escape(r.DisplayName), Escape(r.Email))
	}
	return "*" + Escape(r.Email) + "*"
}

func sentAt(inv *flows.Invitation) time.Time {
	if !inv.InvitedAt.IsZero() {
		return inv.InvitedAt
	}
	return inv.CreatedAt
}

func actionVerb(k flows.ActionKind) string {
	switch k {
	case flows.ActionResend:
		return "resend the invitation"
	case flows.ActionReset:
		return "reset the redemption"
	case flows.ActionRevokeGroups:
		return "remove the guest from its groups"
	case flows.ActionDelete:
		return "delete the guest"
	case flows.ActionExpire:
		return "end the guest's expired access"
	}
	return string(k)
}

// actionButtons are the buttons on the inviter's DMs: Resend while pending,
// Revoke when invitebot added groups. Admin actions live on the Home tab.
func actionButtons(inv *flows.Invitation, final bool) []slack.BlockElement {
	var btns []slack.BlockElement
	if final {
		return nil
	}
	if flows.Applicable(inv, flows.ActionResend) == nil {
		btns = append(btns, slack.NewButtonBlockElement(ActionResend, inv.ID, plain("Resend")))
	}
	if flows.Applicable(inv, flows.ActionRevokeGroups) == nil {
		btn := slack.NewButtonBlockElement(ActionRevoke, inv.ID, plain("Revoke access"))
		btn.Style = slack.StyleDanger
		btn.Confirm = slack.NewConfirmationBlockObject(plain("Revoke access?"),
			plain(truncate("Remove "+firstNonEmpty(inv.Request.DisplayName, inv.Request.Email)+" from the groups invitebot added?", 300)),
			plain("Revoke"), plain("Cancel"))
		btns = append(btns, btn)
	}
	return btns
}

// actionKinds maps the buttons' and overflow options' action IDs to flows.
var actionKinds = map[string]flows.ActionKind{
	ActionResend: flows.ActionResend,
	ActionReset:  flows.ActionReset,
	ActionRevoke: flows.ActionRevokeGroups,
	ActionDelete: flows.ActionDelete,
}

// blockAction handles a button or overflow choice on a DM or the Home tab.
func (b *Bot) blockAction(ctx context.Context, cb slack.InteractionCallback, who flows.Inviter, a *slack.BlockAction) {
	actionID, id := a.ActionID, a.Value
	if a.ActionID == ActionOverflow && a.SelectedOption.Value != "" {
		actionID, id, _ = strings.Cut(a.SelectedOption.Value, ":")
	}
	switch actionID {
	case ActionApprove:
		b.approve(ctx, cb, who, id)
		return
	case ActionExtend, ActionLetExpire:
		b.expiryChoice(ctx, cb, who, id, actionID == ActionExtend)
		return
	case ActionDeny:
		if _, err := b.api.OpenViewContext(ctx, cb.TriggerID, DenyModal(id)); err != nil {
			b.log.WarnContext(ctx, "views.open deny", "err", err)
		}
		return
	case ActionDMInvitee:
		b.sendToInvitee(ctx, cb, who, id)
		return
	case ActionConnect:
		return // a link: the browser opened it
	case ActionDisconnect:
		b.disconnect(ctx, who.UserID)
		return
	case ActionConvertOpen:
		if !b.svc.Policy().IsAdmin(who.UserID) {
			b.reply(ctx, cb, who, "Only invitebot admins can convert internal users.")
			return
		}
		if _, err := b.api.OpenViewContext(ctx, cb.TriggerID, ConvertModal()); err != nil {
			b.log.WarnContext(ctx, "views.open convert", "err", err)
		}
		return
	}
	kind, ok := actionKinds[actionID]
	if !ok {
		b.log.InfoContext(ctx, "ignored block action", "action_id", a.ActionID)
		return
	}
	if kind == flows.ActionDelete {
		// Deleting a user needs a second look: a confirmation dialog.
		inv, err := b.svc.Invitation(ctx, id)
		if err != nil || !b.svc.Policy().IsAdmin(who.UserID) {
			b.reply(ctx, cb, who, refusal(flows.ErrNotAuthorized, kind))
			return
		}
		if _, err := b.api.OpenViewContext(ctx, cb.TriggerID, ConfirmDeleteModal(inv)); err != nil {
			b.log.WarnContext(ctx, "views.open confirm delete", "err", err)
		}
		return
	}
	b.act(ctx, cb, who, id, kind)
}

// act starts a lifecycle action and tells who what happens next.
func (b *Bot) act(ctx context.Context, cb slack.InteractionCallback, who flows.Inviter, id string, kind flows.ActionKind) {
	_, err := b.svc.Act(ctx, id, who, kind)
	if err != nil {
		if !errors.Is(err, flows.ErrNotAuthorized) && !errors.Is(err, flows.ErrInProgress) &&
			!errors.Is(err, flows.ErrNotApplicable) && !errors.Is(err, flows.ErrNotFound) {
			b.log.ErrorContext(ctx, "lifecycle action", "action", kind, "id", id, "err", err)
		}
		b.reply(ctx, cb, who, refusal(err, kind))
		return
	}
	b.reply(ctx, cb, who, "Working on it: invitebot will "+actionVerb(kind)+" and DM the result.")
}

// refusal explains why an action was not started.
func refusal(err error, kind flows.ActionKind) string {
	switch {
	case errors.Is(err, flows.ErrNotAuthorized) && kind.AdminOnly():
		return "Only invitebot admins can " + actionVerb(kind) + "."
	case errors.Is(err, flows.ErrNotAuthorized):
		return "Only the person who sent this invitation (or an invitebot admin) can " + actionVerb(kind) + "."
	case errors.Is(err, flows.ErrInProgress):
		return "Another action on this invitation is still running; wait for its result."
	case errors.Is(err, flows.ErrNotApplicable):
		return "That no longer applies to this invitation (it was accepted, revoked or removed meanwhile)."
	case errors.Is(err, flows.ErrNotFound):
		return "That invitation is not known to invitebot."
	}
	return "invitebot could not record that; please try again."
}

// reply answers who with an ephemeral message where they acted: the
// message's channel, or their DM with the bot for the Home tab and dialogs.
func (b *Bot) reply(ctx context.Context, cb slack.InteractionCallback, who flows.Inviter, text string) {
	ch := cb.Channel.ID
	if ch == "" {
		c, _, _, err := b.api.OpenConversationContext(ctx, &slack.OpenConversationParameters{Users: []string{who.UserID}, ReturnIM: true})
		if err != nil {
			b.log.WarnContext(ctx, "open DM for reply", "err", err)
			return
		}
		ch = c.ID
	}
	if _, err := b.api.PostEphemeralContext(ctx, ch, who.UserID, slack.MsgOptionText(text, false)); err != nil {
		b.log.WarnContext(ctx, "ephemeral reply", "err", err)
	}
}

// submitConfirmDelete runs the delete the admin confirmed.
func (b *Bot) submitConfirmDelete(ctx context.Context, cb slack.InteractionCallback, who flows.Inviter) any {
	id := parseMetadata(cb.View.PrivateMetadata).Invitation
	_, err := b.svc.Act(ctx, id, who, flows.ActionDelete)
	if err != nil {
		// The dialog has no input to hang an error on: say it in the dialog.
		v := slack.ModalViewRequest{Type: slack.VTModal, Title: plain("Delete guest"), Close: plain("Close"),
			Blocks: slack.Blocks{BlockSet: []slack.Block{section(":no_entry: " + refusal(err, flows.ActionDelete))}}}
		return slack.NewUpdateViewSubmissionResponse(&v)
	}
	return slack.NewClearViewSubmissionResponse()
}

// submitConvert starts converting an internal user from the Home tab's
// dialog; bad input is answered next to the field.
func (b *Bot) submitConvert(ctx context.Context, cb slack.InteractionCallback, who flows.Inviter) any {
	var account, email string
	if st := cb.View.State; st != nil {
		account = st.Values[BlockConvertAccount][BlockConvertAccount].Value
		email = st.Values[BlockEmail][BlockEmail].Value
	}
	_, err := b.svc.Convert(ctx, who, account, email)
	var fe flows.FieldErrors
	switch {
	case errors.As(err, &fe):
		errs := map[string]string{}
		for f, msg := range fe {
			if f == flows.FieldConvertFrom {
				errs[BlockConvertAccount] = msg
			} else {
				errs[BlockEmail] = msg
			}
		}
		return slack.NewErrorsViewSubmissionResponse(errs)
	case errors.Is(err, flows.ErrNotAuthorized):
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockConvertAccount: "Only invitebot admins can convert internal users."})
	case err != nil:
		b.log.ErrorContext(ctx, "convert", "err", err)
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockConvertAccount: "invitebot could not record the request; please try again."})
	}
	return slack.NewClearViewSubmissionResponse()
}

// convertCommand handles "/invite-guest convert <account> <external email>".
func (b *Bot) convertCommand(ctx context.Context, cmd slack.SlashCommand, args []string) any {
	if len(args) != 2 {
		return ephemeral("Usage: `/invite-guest convert <internal account UPN or object ID> <external email>`")
	}
	who := flows.Inviter{TeamID: cmd.TeamID, UserID: cmd.UserID}
	account, email := cleanAddress(args[0]), cleanAddress(args[1])
	inv, err := b.svc.Convert(ctx, who, account, email)
	var fe flows.FieldErrors
	switch {
	case errors.Is(err, flows.ErrNotAuthorized):
		return ephemeral("Only invitebot admins can convert internal users to B2B.")
	case errors.As(err, &fe):
		var lines []string
		for f, msg := range fe {
			name := "external email"
			if f == flows.FieldConvertFrom {
				name = "account"
			}
			lines = append(lines, name+": "+Escape(msg))
		}
		return ephemeral("Cannot convert:\n" + strings.Join(lines, "\n"))
	case err != nil:
		b.log.ErrorContext(ctx, "convert", "err", err)
		return ephemeral("invitebot could not record the request (its store failed). Please try again.")
	}
	return ephemeral(fmt.Sprintf("Converting %s to a B2B user with the external address %s. invitebot checks the account first and DMs you the result (invitation `%s`).",
		Escape(account), Escape(email), inv.ID))
}

// cleanAddress undoes Slack's auto-linking of addresses (<mailto:a@b|a@b>).
func cleanAddress(s string) string {
	s = strings.Trim(s, "<>")
	if i := strings.IndexByte(s, '|'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimPrefix(s, "mailto:")
}

// writesAbandonedText tells the inviter that the guest's attributes or
// sponsor were never written, and what Entra requires (from the refused
// operation, f.Op).
func writesAbandonedText(inv *flows.Invitation, f *flows.Failure, who string) string {
	what := "attributes and sponsor"
	if d := inv.Deferred; d != nil && d.What() != "" {
		what = d.What()
	}
	text := fmt.Sprintf(":warning: invitebot could not write the %s of %s in Microsoft Entra", what, who)
	if f == nil || f.Code != flows.FailForbidden {
		msg := ""
		if f != nil {
			msg = f.Message
		}
		return text + ": Microsoft Graph refused: " + Escape(msg) + "."
	}
	d := inv.Deferred
	if d != nil {
		text += ": Entra still refused it (403) " + flows.Age(d.Until.Sub(d.Since)) + " after the invitation"
	}
	return text + ". invitebot needs " + Escape(flows.WriteNeeds(f.Op)) + ". Ask your Entra admin; the invitation itself is done."
}

package bot

import (
	"context"
	"errors"
	"strings"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// fieldBlocks maps flows' request fields to the dialog's input blocks.
var fieldBlocks = map[flows.Field]string{
	flows.FieldEmail:         BlockEmail,
	flows.FieldDisplayName:   BlockDisplayName,
	flows.FieldRedirectURL:   BlockRedirectURL,
	flows.FieldDelivery:      BlockDelivery,
	flows.FieldMessage:       BlockMessage,
	flows.FieldCC:            BlockCC,
	flows.FieldUserType:      BlockUserType,
	flows.FieldGroups:        BlockGroups,
	flows.FieldGivenName:     BlockGivenName,
	flows.FieldSurname:       BlockSurname,
	flows.FieldCompanyName:   BlockCompanyName,
	flows.FieldJobTitle:      BlockJobTitle,
	flows.FieldJustification: BlockJustification,
	flows.FieldExpiresIn:     BlockExpiresIn,
}

// ParseSubmission reads the invitation dialog's state into a request.
// Blocks absent from the view (user type for non-admins, groups when none
// are offered) keep their zero value and are defaulted by flows.
func ParseSubmission(state *slack.ViewState) flows.Request {
	if state == nil {
		return flows.Request{}
	}
	val := func(id string) slack.BlockAction { return state.Values[id][id] }
	r := flows.Request{
		Email:       val(BlockEmail).Value,
		DisplayName: val(BlockDisplayName).Value,
		RedirectURL: val(BlockRedirectURL).Value,
		Delivery:    flows.Delivery(val(BlockDelivery).SelectedOption.Value),
		Message:     val(BlockMessage).Value,
		CC:          val(BlockCC).Value,
		UserType:    flows.UserType(val(BlockUserType).SelectedOption.Value),
		Attributes: flows.Attributes{
			GivenName:   val(BlockGivenName).Value,
			Surname:     val(BlockSurname).Value,
			CompanyName: val(BlockCompanyName).Value,
			JobTitle:    val(BlockJobTitle).Value,
		},
		Justification: val(BlockJustification).Value,
		ExpiresIn:     parseExpiry(val(BlockExpiresIn).SelectedOption.Value),
	}
	for _, o := range val(BlockGroups).SelectedOptions {
		r.Groups = append(r.Groups, o.Value)
	}
	return r
}

// interaction answers an interaction payload. The answer is the HTTP body
// (or the Socket Mode ack payload); nil means an empty 200.
func (b *Bot) interaction(ctx context.Context, cb slack.InteractionCallback) any {
	who := flows.Inviter{TeamID: cb.Team.ID, UserID: cb.User.ID}
	if b.foreign(cb.Team.ID, cb.Enterprise.ID, cb.APIAppID) {
		b.log.WarnContext(ctx, "refused an interaction for another workspace or app", "team", cb.Team.ID, "app", cb.APIAppID)
		return nil
	}
	switch cb.Type {
	case slack.InteractionTypeViewSubmission:
		switch cb.View.CallbackID {
		case CallbackInvite:
			return b.submitInvite(ctx, cb, who)
		case CallbackPick:
			return b.submitPick(ctx, cb, who)
		case CallbackConfirmDelete:
			return b.submitConfirmDelete(ctx, cb, who)
		case CallbackConvert:
			return b.submitConvert(ctx, cb, who)
		case CallbackDeny:
			return b.submitDeny(ctx, cb, who)
		}
	case slack.InteractionTypeViewClosed:
		if cb.View.CallbackID == CallbackPick {
			id := parseMetadata(cb.View.PrivateMetadata).Invitation
			if err := b.svc.Cancel(ctx, id, who); err != nil && !errors.Is(err, flows.ErrWrongState) {
				b.log.WarnContext(ctx, "cancel on close", "invitation", id, "err", err)
			}
		}
		return nil
	case slack.InteractionTypeBlockActions:
		for _, a := range cb.ActionCallback.BlockActions {
			b.blockAction(ctx, cb, who, a)
		}
		return nil
	}
	b.log.InfoContext(ctx, "ignored interaction", "type", cb.Type, "callback_id", cb.View.CallbackID)
	return nil
}

func (b *Bot) submitInvite(ctx context.Context, cb slack.InteractionCallback, who flows.Inviter) any {
	inv, err := b.svc.Submit(ctx, cb.View.ID, who, ParseSubmission(cb.View.State))
	var fe flows.FieldErrors
	switch {
	case errors.As(err, &fe):
		errs := make(map[string]string, len(fe))
		for f, msg := range fe {
			// An error must name an input block of this dialog, or Slack
			// shows none (e.g. a dialog opened before the policy changed).
			if id, ok := fieldBlocks[f]; ok && hasBlock(cb.View, id) {
				errs[id] = msg
			} else {
				errs[BlockEmail] = msg
			}
		}
		return slack.NewErrorsViewSubmissionResponse(errs)
	case err != nil:
		b.log.ErrorContext(ctx, "submit invitation", "user", who.UserID, "err", err)
		return slack.NewErrorsViewSubmissionResponse(map[string]string{
			BlockEmail: "invitebot could not record the request (its store failed). Please try again; the admins can see the details in its log.",
		})
	}
	v := StatusModal(inv, b.svc.Policy(), "")
	if inv.State == flows.StateAwaitingPick {
		// A re-delivered submission after the matches were shown: keep the
		// pick dialog (closing it cancels; the status dialog would not).
		v = PickModal(inv)
	}
	return slack.NewUpdateViewSubmissionResponse(&v)
}

func (b *Bot) submitPick(ctx context.Context, cb slack.InteractionCallback, who flows.Inviter) any {
	id := parseMetadata(cb.View.PrivateMetadata).Invitation
	pick := ""
	if cb.View.State != nil {
		pick = cb.View.State.Values[BlockPick][BlockPick].SelectedOption.Value
	}
	if pick == "" {
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockPick: "Pick an account, or choose to invite a new guest."})
	}
	if pick == PickNew {
		pick = ""
	}
	inv, err := b.svc.Pick(ctx, id, who, pick)
	switch {
	case errors.Is(err, flows.ErrNotAuthorized):
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockPick: "Only the person who started this invitation can choose."})
	case errors.Is(err, flows.ErrWrongState):
		// A double click: show where the invitation is now.
		if inv, err = b.svc.Invitation(ctx, id); err != nil {
			return nil
		}
	case errors.Is(err, flows.ErrNotFound):
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockPick: "That account is not one of the matches any more."})
	case err != nil:
		b.log.ErrorContext(ctx, "pick", "invitation", id, "err", err)
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockPick: "invitebot could not record your choice. Please try again."})
	}
	v := StatusModal(inv, b.svc.Policy(), "")
	return slack.NewUpdateViewSubmissionResponse(&v)
}

// sendToInvitee DMs the invitation text to the invitee's own Slack account
// (e.g. a Slack Connect partner). Only the inviter may do this.
func (b *Bot) sendToInvitee(ctx context.Context, cb slack.InteractionCallback, who flows.Inviter, id string) {
	reply := func(text string) {
		if _, err := b.api.PostEphemeralContext(ctx, cb.Channel.ID, who.UserID, slack.MsgOptionText(text, false)); err != nil {
			b.log.WarnContext(ctx, "ephemeral reply", "err", err)
		}
	}
	inv, err := b.svc.Invitation(ctx, id)
	switch {
	case err != nil:
		reply("That invitation is not known to invitebot any more.")
		return
	case inv.Inviter.UserID != who.UserID:
		b.log.WarnContext(ctx, "refused dm_invitee from another user", "user", who.UserID, "invitation", inv)
		reply("Only the person who sent this invitation can forward it.")
		return
	case inv.RedeemURL == "":
		reply("There is no invitation link to send for this guest.")
		return
	case !inv.Pending():
		reply("This invitation is no longer pending (accepted, revoked or removed): there is nothing to send.")
		return
	}
	u, err := b.api.GetUserByEmailContext(ctx, inv.Request.Email)
	if err != nil {
		reply("The guest is not in this Slack workspace any more; forward the text yourself.")
		return
	}
	text, err := b.invitationText(ctx, inv)
	if err == nil {
		_, err = b.dm(ctx, u.ID, slack.MsgOptionText(text, false))
	}
	if err != nil {
		b.log.WarnContext(ctx, "dm invitee", "invitation", inv, "err", err)
		reply("Could not DM the guest; forward the text yourself.")
		return
	}
	b.log.InfoContext(ctx, "invitation sent to invitee in Slack", "invitation", inv)
	reply("Sent the invitation to <@" + u.ID + "> in a DM.")
}

// dm posts a message to a user's DM with the bot: to the user ID, which
// Slack resolves to the app's DM with them (no conversations.open). The
// reference returned names the DM channel Slack answered with. See post
// for the notices it delivers.
func (b *Bot) dm(ctx context.Context, userID string, opts ...slack.MsgOption) (flows.MessageRef, error) {
	return b.post(ctx, userID, opts...)
}

// invitationText renders the ready-to-forward invitation, escaped for Slack.
func (b *Bot) invitationText(ctx context.Context, inv *flows.Invitation) (string, error) {
	inviter := "A colleague"
	if p, err := b.profile(ctx, inv.Inviter.UserID); err == nil {
		inviter = firstNonEmpty(p.Name, inviter)
	}
	var sb strings.Builder
	err := b.tmpl.Load().Execute(&sb, map[string]string{
		"GuestName":   firstNonEmpty(inv.Request.DisplayName, inv.Request.Email),
		"GuestEmail":  inv.Request.Email,
		"RedeemURL":   inv.RedeemURL,
		"Message":     inv.Request.Message,
		"InviterName": inviter,
	})
	return Escape(sb.String()), err
}

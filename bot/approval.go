package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// mentions renders an approval's approvers as Slack mentions.
func mentions(a *flows.Approval) string {
	if a == nil || len(a.Approvers) == 0 {
		return "an approver"
	}
	m := make([]string, len(a.Approvers))
	for i, u := range a.Approvers {
		m[i] = "<@" + u + ">"
	}
	return strings.Join(m, ", ")
}

// hasBlock reports whether the view has a block with the ID.
func hasBlock(v slack.View, id string) bool {
	for _, b := range v.Blocks.BlockSet {
		if b.ID() == id {
			return true
		}
	}
	return false
}

// approvalRequest renders what an approver reads, with the decision
// buttons while it is pending. Every untrusted string is escaped.
func (b *Bot) approvalRequest(inv *flows.Invitation) ([]slack.Block, string) {
	r := inv.Request
	p := b.svc.Policy()
	groups := make([]string, len(r.Groups))
	for i, g := range r.Groups {
		groups[i] = Escape(p.GroupName(g))
	}
	fields := []*slack.TextBlockObject{
		mrkdwn("*Requested by*\n<@" + inv.Inviter.UserID + ">"),
		mrkdwn("*Guest*\n" + guestName(inv)),
		mrkdwn("*User type*\n" + Escape(string(r.UserType))),
		mrkdwn("*Groups*\n" + orDash(strings.Join(groups, ", "))),
	}
	blocks := []slack.Block{
		section(":raising_hand: *A guest invitation needs your approval*"),
		slack.NewSectionBlock(nil, fields, nil),
		section("*Why*\n" + orDash(Escape(r.Justification))),
	}
	fallback := "Approval needed: " + Escape(r.Email)
	a := inv.Approval
	if a != nil && a.Decision == "" {
		// Each stage needs one of its own approvers.
		var lines []string
		for _, st := range p.Decide(r, inv.Inviter.UserID).Stages {
			if by := a.Approved[st.Name]; by != "" {
				lines = append(lines, fmt.Sprintf(":white_check_mark: %s: approved by <@%s>", Escape(st.Name), by))
			} else {
				lines = append(lines, fmt.Sprintf(":hourglass: %s: one of %s", Escape(st.Name), mentions(&flows.Approval{Approvers: st.Approvers})))
			}
		}
		if len(lines) > 0 {
			blocks = append(blocks, section("*Approvals needed*\n"+strings.Join(lines, "\n")))
		}
	}
	switch {
	case a == nil || a.Decision == "":
		approve := slack.NewButtonBlockElement(ActionApprove, inv.ID, plain("Approve"))
		approve.Style = slack.StylePrimary
		deny := slack.NewButtonBlockElement(ActionDeny, inv.ID, plain("Deny…"))
		deny.Style = slack.StyleDanger
		blocks = append(blocks, slack.NewActionBlock("approval", approve, deny))
		if a != nil {
			blocks = append(blocks, note(fmt.Sprintf("Each approval above needs one of its approvers; anyone of them can deny; the requester cannot decide. Expires %s.",
				a.ExpiresAt.UTC().Format("2 Jan 2006 15:04 MST"))))
		}
	case a.Decision == flows.DecisionApproved:
		blocks = append(blocks, section(fmt.Sprintf(":white_check_mark: *Approved* by <@%s>, %s", a.DecidedBy, a.DecidedAt.UTC().Format("2 Jan 2006 15:04 MST"))))
	case a.Decision == flows.DecisionDenied && a.DecidedBy == "":
		blocks = append(blocks, section(fmt.Sprintf(":x: *Ended*, %s: the policy no longer allows it. %s", a.DecidedAt.UTC().Format("2 Jan 2006 15:04 MST"), Escape(a.Reason))))
	case a.Decision == flows.DecisionDenied:
		blocks = append(blocks, section(fmt.Sprintf(":x: *Denied* by <@%s>, %s: %s", a.DecidedBy, a.DecidedAt.UTC().Format("2 Jan 2006 15:04 MST"), Escape(a.Reason))))
	case a.Decision == flows.DecisionExpired:
		blocks = append(blocks, section(":hourglass: *Expired*: nobody decided in time."))
	}
	return append(blocks, note("Invitation `"+inv.ID+"`")), fallback
}

// requestApproval posts an approval request to n.To: a channel, or an
// approver's DM.
func (b *Bot) requestApproval(ctx context.Context, n flows.Notice) (flows.MessageRef, error) {
	blocks, fallback := b.approvalRequest(n.Invitation)
	opts := []slack.MsgOption{slack.MsgOptionText(fallback, false), slack.MsgOptionBlocks(blocks...)}
	if strings.HasPrefix(n.To, "C") || strings.HasPrefix(n.To, "G") {
		ref, err := b.post(ctx, n.To, opts...)
		if err != nil {
			return flows.MessageRef{}, classify(fmt.Errorf("post approval request: %w", err))
		}
		return ref, nil
	}
	ref, err := b.dm(ctx, n.To, opts...)
	if err != nil {
		return ref, classify(fmt.Errorf("dm approval request: %w", err))
	}
	return ref, nil
}

// approvalDecided updates the posted requests and tells the requester.
func (b *Bot) approvalDecided(ctx context.Context, inv *flows.Invitation) error {
	a := inv.Approval
	if a == nil {
		return nil
	}
	blocks, fallback := b.approvalRequest(inv)
	for _, m := range a.Messages {
		if _, _, _, err := b.api.UpdateMessageContext(ctx, m.Ref.Channel, m.Ref.TS, slack.MsgOptionText(fallback, false), slack.MsgOptionBlocks(blocks...)); err != nil {
			b.log.WarnContext(ctx, "update approval request", "invitation", inv, "err", err)
		}
	}
	var text string
	switch a.Decision {
	case "":
		return nil // approved in part: the requests above now say so
	case flows.DecisionApproved:
		text = fmt.Sprintf(":white_check_mark: <@%s> approved your invitation of %s. invitebot is inviting them now and will DM you the result.", a.DecidedBy, guestName(inv))
	case flows.DecisionDenied:
		text = fmt.Sprintf(":x: <@%s> denied your invitation of %s: %s", a.DecidedBy, guestName(inv), Escape(a.Reason))
		if a.DecidedBy == "" {
			text = fmt.Sprintf(":x: Your invitation of %s was ended: the policy no longer allows it. %s", guestName(inv), Escape(a.Reason))
		}
	default:
		text = fmt.Sprintf(":hourglass: Nobody decided on your invitation of %s in time, so the request expired. Ask again if you still need the guest.", guestName(inv))
	}
	if _, err := b.dm(ctx, inv.Inviter.UserID, slack.MsgOptionText(text, false)); err != nil {
		return classify(fmt.Errorf("dm requester: %w", err))
	}
	b.refreshHomes(ctx, inv.Inviter.UserID)
	return nil
}

// approve records an approval pressed on a request.
func (b *Bot) approve(ctx context.Context, cb slack.InteractionCallback, who flows.Inviter, id string) {
	inv, err := b.svc.Decide(ctx, id, who, true, "")
	switch {
	case err != nil:
		b.reply(ctx, cb, who, decisionRefusal(err))
	case inv.Approval.Decision == "":
		b.reply(ctx, cb, who, "Approved your part; the request still waits for the other approvals it needs.")
	default:
		b.reply(ctx, cb, who, "Approved: invitebot is inviting the guest now.")
	}
}

// decisionRefusal explains why a decision was not recorded.
func decisionRefusal(err error) string {
	switch {
	case errors.Is(err, flows.ErrNotAuthorized):
		return "You are not an approver of this request (or it is your own: nobody may approve their own request)."
	case errors.Is(err, flows.ErrWrongState):
		return "This request has already been decided."
	case errors.Is(err, flows.ErrPolicyDenied):
		return "The policy no longer allows this invitation, so it was ended; the requester has been told."
	case errors.Is(err, flows.ErrExpired):
		return "This request has expired; the requester can ask again."
	case errors.Is(err, flows.ErrNotFound):
		return "That request is not known to invitebot."
	}
	return "invitebot could not record the decision; please try again."
}

// DenyModal asks a denying approver for the reason the requester will read.
func DenyModal(id string) slack.ModalViewRequest {
	return slack.ModalViewRequest{
		Type: slack.VTModal, CallbackID: CallbackDeny,
		Title: plain("Deny the invitation"), Submit: plain("Deny"), Close: plain("Cancel"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			textInput(BlockReason, "Why?", "The requester reads this.", "", 500, false, true),
		}},
		PrivateMetadata: metadata{Invitation: id}.String(),
	}
}

// submitDeny records a denial with its reason; refusals show in the dialog.
func (b *Bot) submitDeny(ctx context.Context, cb slack.InteractionCallback, who flows.Inviter) any {
	id := parseMetadata(cb.View.PrivateMetadata).Invitation
	reason := ""
	if st := cb.View.State; st != nil {
		reason = strings.TrimSpace(st.Values[BlockReason][BlockReason].Value)
	}
	if reason == "" {
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockReason: "Say why: the requester reads it."})
	}
	if _, err := b.svc.Decide(ctx, id, who, false, reason); err != nil {
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockReason: decisionRefusal(err)})
	}
	return slack.NewClearViewSubmissionResponse()
}

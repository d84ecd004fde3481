package bot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// Notify implements flows.Notifier: progress goes to the dialog (if it is
// still open), matches replace the dialog with the pick dialog, and the
// outcome is DMed to the inviter.
func (b *Bot) Notify(ctx context.Context, n flows.Notice) error {
	inv := n.Invitation
	p := b.svc.Policy()
	switch n.Kind {
	case flows.NoticeProgress:
		return b.updateView(ctx, inv, StatusModal(inv, p, ""), false)
	case flows.NoticeRetrying:
		return b.updateView(ctx, inv, StatusModal(inv, p, n.RetryIn.Round(100*time.Millisecond).String()), false)
	case flows.NoticeMatches:
		return b.updateView(ctx, inv, PickModal(inv), true)
	case flows.NoticeDone, flows.NoticeFailed:
		// The dialog is a courtesy; the DM is the record.
		if err := b.updateView(ctx, inv, StatusModal(inv, p, ""), false); err != nil {
			b.log.Debug("final dialog update", "invitation", inv, "err", err)
		}
		return b.dmResult(ctx, inv)
	}
	return fmt.Errorf("notify: unknown notice kind %q", n.Kind)
}

// updateView replaces the invitation's dialog, addressed by external_id.
// Until Slack has applied the submission's own response the external_id is
// unknown (not_found); a closed dialog is not_found too. Progress updates
// ignore that; the pick dialog (must) retries briefly, then reports it.
func (b *Bot) updateView(ctx context.Context, inv *flows.Invitation, v slack.ModalViewRequest, must bool) error {
	tries := 1
	if must {
		tries = 5
	}
	var err error
	for i := range tries {
		_, err = b.api.UpdateViewContext(ctx, v, externalID(inv), "", "")
		var se slack.SlackErrorResponse
		if err == nil || !errors.As(err, &se) || se.Err != "not_found" {
			break
		}
		if !must {
			return nil
		}
		if flows.SleepContext(ctx, time.Duration(100<<i)*time.Millisecond) != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("views.update: %w", err)
	}
	return nil
}

// dmResult DMs the inviter the outcome: what was done, and with the Slack
// delivery the redeem link and a ready-to-forward text.
func (b *Bot) dmResult(ctx context.Context, inv *flows.Invitation) error {
	blocks, fallback := b.resultMessage(ctx, inv)
	if err := b.dm(ctx, inv.Inviter.UserID, slack.MsgOptionText(fallback, false), slack.MsgOptionBlocks(blocks...)); err != nil {
		return rateLimit(fmt.Errorf("dm inviter: %w", err))
	}
	return nil
}

// resultMessage renders the DM. Every untrusted string is escaped.
func (b *Bot) resultMessage(ctx context.Context, inv *flows.Invitation) ([]slack.Block, string) {
	r := inv.Request
	if inv.State == flows.StateFailed {
		text := fmt.Sprintf(":x: *Could not invite %s*\n%s", Escape(r.Email), FailureText(inv.Failure))
		return []slack.Block{section(text), note("Invitation `" + inv.ID + "`")}, "Could not invite " + Escape(r.Email)
	}
	p := b.svc.Policy()
	blocks := []slack.Block{section(":white_check_mark: " + doneSummary(inv, p))}
	var details []*slack.TextBlockObject
	details = append(details, mrkdwn("*Email*\n"+Escape(r.Email)), mrkdwn("*User type*\n"+Escape(string(r.UserType))))
	if !r.Attributes.IsZero() {
		details = append(details, mrkdwn("*Attributes*\nset"))
	}
	details = append(details, mrkdwn("*Lands on*\n"+Escape(r.RedirectURL)))
	blocks = append(blocks, slack.NewSectionBlock(nil, details, nil))
	switch {
	case inv.Picked:
		blocks = append(blocks, note("No invitation was sent: the account already existed."))
	case r.Delivery == flows.DeliveryMicrosoftEmail:
		blocks = append(blocks, note("Microsoft emailed the invitation from invites@microsoft.com; ask the guest to check their spam folder if it does not arrive."))
	case inv.RedeemURL != "":
		text, err := b.invitationText(ctx, inv)
		if err != nil {
			b.log.Error("invitation template", "err", err)
		}
		blocks = append(blocks,
			section("*Invitation link* (only you can see this; it works once, for "+Escape(r.Email)+"):\n<"+Escape(inv.RedeemURL)+"|Accept the invitation>"),
			section("*Ready to forward:*\n```"+text+"```"),
		)
		if u, err := b.api.GetUserByEmailContext(ctx, r.Email); err == nil && u.ID != inv.Inviter.UserID {
			btn := slack.NewButtonBlockElement(ActionDMInvitee, inv.ID, plain(truncate("Send it to "+firstNonEmpty(u.RealName, u.Name)+" in Slack", maxOptionText)))
			blocks = append(blocks, slack.NewActionBlock("", btn))
		}
	}
	blocks = append(blocks, note("Invitation `"+inv.ID+"`"))
	return blocks, "Invited " + Escape(r.Email)
}

// rateLimitError carries Slack's Retry-After to flows' retry loop.
type rateLimitError struct {
	err   error
	after time.Duration
}

func (e *rateLimitError) Error() string             { return e.err.Error() }
func (e *rateLimitError) Unwrap() error             { return e.err }
func (e *rateLimitError) RetryAfter() time.Duration { return e.after }

func rateLimit(err error) error {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return &rateLimitError{err: err, after: rl.RetryAfter}
	}
	return err
}

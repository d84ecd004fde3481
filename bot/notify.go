package bot

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// Notify implements flows.Notifier: progress goes to the dialog (if it is
// still open, coalesced: see progress), matches replace the dialog with the
// pick dialog, and the outcome is DMed to the inviter.
func (b *Bot) Notify(ctx context.Context, n flows.Notice) (flows.MessageRef, error) {
	ctx = withNotice(ctx, n)
	inv := n.Invitation
	p := b.svc.Policy()
	switch n.Kind {
	case flows.NoticeProgress:
		b.showProgress(inv.ID, externalID(inv), StatusModal(inv, p, ""), false)
		return flows.MessageRef{}, nil
	case flows.NoticeRetrying:
		b.showProgress(inv.ID, externalID(inv), StatusModal(inv, p, n.RetryIn.Round(10*time.Millisecond).String()), n.RetryIn >= b.progressEvery)
		return flows.MessageRef{}, nil
	case flows.NoticeMatches:
		return flows.MessageRef{}, b.showFinal(ctx, inv.ID, externalID(inv), PickModal(inv), true)
	case flows.NoticeDone, flows.NoticeFailed:
		// The DM is the record and goes first; the dialog is a courtesy.
		defer func() {
			if inv.Origin.Dialog() {
				if err := b.showFinal(ctx, inv.ID, externalID(inv), StatusModal(inv, p, ""), false); err != nil {
					b.log.DebugContext(ctx, "final dialog update", "invitation", inv, "err", err)
				}
			}
		}()
		dm := inv
		if inv.State == flows.StateProvisioned {
			// This DM is what makes the invitation notified: render it so,
			// with the buttons a notified invitation has.
			c := *inv
			c.State = flows.StateNotified
			dm = &c
		}
		ref, err := b.dmResult(ctx, dm)
		if err == nil && inv.Origin.RefreshesHome() {
			b.homeChanged(inv.Inviter.UserID)
		}
		return ref, err
	case flows.NoticeApprovalRequested:
		return b.requestApproval(ctx, n)
	case flows.NoticeApprovalDecided:
		return flows.MessageRef{}, b.approvalDecided(ctx, inv)
	case flows.NoticeSignIn:
		return b.askSignIn(ctx, inv)
	case flows.NoticeStepCompleted:
		return flows.MessageRef{}, b.completeStep(ctx, inv)
	}
	return flows.MessageRef{}, b.lifecycleNotice(ctx, n)
}

// updateView replaces a dialog, addressed by its external_id. Until Slack
// has applied the submission's own response the external_id is unknown
// (not_found); a closed dialog is not_found too. Progress updates ignore
// that; the pick dialog (must) retries briefly, then reports it.
func (b *Bot) updateView(ctx context.Context, ext string, v slack.ModalViewRequest, must bool) error {
	tries := 1
	if must {
		tries = 5
	}
	var err error
	for i := range tries {
		_, err = b.api.UpdateViewContext(ctx, v, ext, "", "")
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
// delivery the redeem link and a ready-to-forward text. Whether the invitee
// is in this Slack (the button that DMs them the text) is looked up after
// the DM is out, and the DM is updated if they are (offerInvitee).
func (b *Bot) dmResult(ctx context.Context, inv *flows.Invitation) (flows.MessageRef, error) {
	blocks, fallback, linked := b.resultMessage(ctx, inv, false)
	ref, err := b.dm(ctx, inv.Inviter.UserID, slack.MsgOptionText(fallback, false), slack.MsgOptionBlocks(blocks...))
	if err != nil {
		return ref, classify(fmt.Errorf("dm inviter: %w", err))
	}
	if linked {
		b.offerInvitee(ctx, inv.Clone(), ref)
	}
	return ref, nil
}

// inviteeLookupWait bounds how long the Slack Connect check may wait for
// users.lookupByEmail (Tier 3: 50 a minute) under a burst; beyond it the
// DM keeps no button and the inviter forwards the text themselves.
const inviteeLookupWait = 2 * time.Minute

// offerInvitee looks up, in the background, whether the invitee is in this
// Slack (e.g. Slack Connect) and if so updates the DM at ref with the
// button that sends them the invitation.
func (b *Bot) offerInvitee(ctx context.Context, inv *flows.Invitation, ref flows.MessageRef) {
	b.goJob(ctx, func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, inviteeLookupWait)
		defer cancel()
		u, err := b.inviteeInSlack(ctx, inv.Request.Email)
		if err != nil {
			b.log.InfoContext(ctx, "Slack Connect check skipped", "invitation", inv, "err", err)
			return
		}
		if u == nil || u.ID == inv.Inviter.UserID {
			return
		}
		// The DM may have been rewritten meanwhile (accepted, revoked):
		// render it from the record, after any such rewrite, never before.
		mu := b.dmLock(inv.ID)
		mu.Lock()
		defer mu.Unlock()
		cur := inv
		if got, err := b.svc.Invitation(ctx, inv.ID); err == nil && got.State != flows.StateProvisioned {
			cur = got
		}
		blocks, fallback, linked := b.resultMessage(ctx, cur, true)
		if !linked {
			return // the link is gone from the DM: nothing to send them
		}
		if _, _, _, err := b.api.UpdateMessageContext(ctx, ref.Channel, ref.TS, slack.MsgOptionText(fallback, false), slack.MsgOptionBlocks(blocks...)); err != nil {
			b.log.WarnContext(ctx, "add the Slack Connect button to the DM", "invitation", inv, "err", err)
		}
	})
}

// dmLock orders the rewrites of an invitation's outcome DM (striped by
// invitation ID).
func (b *Bot) dmLock(id string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return &b.dmLocks[h.Sum32()%uint32(len(b.dmLocks))]
}

// resultMessage renders the DM and reports whether it carries the redeem
// link. Every untrusted string is escaped. With lookup, the link blocks
// offer the Slack Connect button if the invitee is in this Slack
// (users.lookupByEmail, cached).
func (b *Bot) resultMessage(ctx context.Context, inv *flows.Invitation, lookup bool) (blocks []slack.Block, fallback string, linked bool) {
	r := inv.Request
	if inv.State == flows.StateFailed {
		text := fmt.Sprintf(":x: *Could not invite %s*\n%s", Escape(r.Email), FailureText(inv.Failure))
		return []slack.Block{section(text), note("Invitation `" + inv.ID + "`")}, "Could not invite " + Escape(r.Email), false
	}
	p := b.svc.Policy()
	blocks = []slack.Block{section(":white_check_mark: " + doneSummary(inv, p))}
	var details []*slack.TextBlockObject
	details = append(details, mrkdwn("*Email*\n"+Escape(r.Email)), mrkdwn("*User type*\n"+Escape(string(userType(inv)))))
	if !r.Attributes.IsZero() {
		state := "set"
		if d := inv.Deferred; d != nil && d.Attributes {
			state = "pending"
		}
		details = append(details, mrkdwn("*Attributes*\n"+state))
	}
	details = append(details, mrkdwn("*Lands on*\n"+Escape(r.RedirectURL)))
	blocks = append(blocks, slack.NewSectionBlock(nil, details, nil))
	switch {
	case inv.State == flows.StateAccepted:
		blocks = append(blocks, section(fmt.Sprintf(":tada: *Accepted* %s.", inv.Tracking.AcceptedAt.UTC().Format("2 Jan 2006 15:04 MST"))))
	case inv.State == flows.StateRevoked:
		blocks = append(blocks, section(":no_entry: *Access revoked.*"))
	case inv.State == flows.StateRemoved:
		blocks = append(blocks, section(":wastebasket: *Deleted in Microsoft Entra.*"))
	case inv.Request.ConvertFrom != "" && r.Delivery == flows.DeliverySlackLink && inv.RedeemURL != "":
		blocks = append(blocks, note("Converted from an internal account: the object ID, groups and app assignments are kept."))
		blocks, linked = append(blocks, b.linkBlocks(ctx, inv, lookup)...), true
	case inv.Picked:
		blocks = append(blocks, note("No invitation was sent: the account already existed."))
	case r.Delivery == flows.DeliveryMicrosoftEmail:
		blocks = append(blocks, note("Microsoft emailed the invitation from invites@microsoft.com; ask the guest to check their spam folder if it does not arrive."))
	case inv.RedeemURL != "":
		blocks, linked = append(blocks, b.linkBlocks(ctx, inv, lookup)...), true
	}
	if d := inv.Deferred; d.Active() {
		blocks = append(blocks, note(fmt.Sprintf(":hourglass_flowing_sand: Writing the guest's %s is pending: Microsoft Entra refused it (403), "+
			"as it does until a new guest joins the administrative unit invitebot's role covers. invitebot keeps trying until %s.",
			d.What(), d.Until.UTC().Format("2 Jan 2006 15:04 MST"))))
	} else if d != nil && d.GaveUp != "" {
		blocks = append(blocks, note(":warning: The guest's "+d.What()+" could not be written: "+Escape(d.GaveUp)))
	}
	if btns := actionButtons(inv, false); len(btns) > 0 {
		blocks = append(blocks, slack.NewActionBlock(BlockInvitationActions, btns...))
	}
	blocks = append(blocks, note("Invitation `"+inv.ID+"`"))
	return blocks, "Invited " + Escape(r.Email), linked
}

// linkBlocks carry the redeem link and the ready-to-forward text (split
// over several blocks if long: a section holds 3000 characters), and, with
// lookup, the button that DMs it to the invitee if they are in this Slack.
func (b *Bot) linkBlocks(ctx context.Context, inv *flows.Invitation, lookup bool) []slack.Block {
	r := inv.Request
	text, err := b.invitationText(ctx, inv)
	if err != nil {
		b.log.ErrorContext(ctx, "invitation template", "err", err)
	}
	blocks := []slack.Block{
		section("*Invitation link* (only you can see this; it works once, for " + Escape(r.Email) + "):\n<" + Escape(inv.RedeemURL) + "|Accept the invitation>"),
	}
	for i, part := range splitText(text, maxTextLen-len("*Ready to forward:*\n``````")) {
		head := ""
		if i == 0 {
			head = "*Ready to forward:*\n"
		}
		blocks = append(blocks, section(head+"```"+part+"```"))
	}
	if !lookup {
		return blocks
	}
	if u, err := b.inviteeInSlack(ctx, r.Email); err == nil && u != nil && u.ID != inv.Inviter.UserID {
		btn := slack.NewButtonBlockElement(ActionDMInvitee, inv.ID, plain(truncate("Send it to "+firstNonEmpty(u.RealName, u.Name)+" in Slack", maxOptionText)))
		blocks = append(blocks, slack.NewActionBlock("", btn))
	}
	return blocks
}

// splitText cuts s into parts of at most n runes, at line ends where it
// can, so a link on its own line is never cut.
func splitText(s string, n int) []string {
	var parts []string
	for utf8.RuneCountInString(s) > n {
		r := []rune(s)
		cut := n
		if i := strings.LastIndex(string(r[:n]), "\n"); i > 0 {
			cut = utf8.RuneCountInString(string(r[:n])[:i]) + 1
		}
		parts = append(parts, strings.TrimRight(string(r[:cut]), "\n"))
		s = string(r[cut:])
	}
	return append(parts, s)
}

// rateLimitError carries Slack's Retry-After to flows' retry loop.
type rateLimitError struct {
	err   error
	after time.Duration
}

func (e *rateLimitError) Error() string             { return e.err.Error() }
func (e *rateLimitError) Unwrap() error             { return e.err }
func (e *rateLimitError) RetryAfter() time.Duration { return e.after }

// undeliverable are Slack's errors that retrying a message cannot fix.
var undeliverable = []string{"user_not_found", "account_inactive", "user_disabled", "channel_not_found",
	"cannot_dm_bot", "is_archived", "invalid_blocks", "msg_too_long", "no_text", "invalid_auth", "token_revoked"}

// classify tells flows how to treat a Slack error: a rate limit carries
// Slack's Retry-After; an error retrying cannot fix is ErrUndeliverable.
func classify(err error) error {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return &rateLimitError{err: err, after: rl.RetryAfter}
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) && slices.Contains(undeliverable, se.Err) {
		return fmt.Errorf("%w: %w", flows.ErrUndeliverable, err)
	}
	return err
}

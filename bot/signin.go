package bot

import (
	"context"
	"errors"
	"fmt"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// SignIn is the inviters' Microsoft sign-in (internal/signin).
type SignIn interface {
	// NewLink returns a fresh connect link for the Slack user (single use,
	// valid 10 minutes).
	NewLink(ctx context.Context, slackUserID string) (string, error)
	// Connection returns their connected account, or flows.ErrSignInNeeded.
	Connection(ctx context.Context, slackUserID string) (flows.Connection, error)
	// Disconnect deletes their stored tokens; it reports whether they were
	// connected.
	Disconnect(ctx context.Context, slackUserID string) (bool, error)
}

// ConnectBlocks is the "Connect your Microsoft account" prompt: text and a
// link button to url (a fresh /auth/start link).
func ConnectBlocks(text, url string) []slack.Block {
	btn := slack.NewButtonBlockElement(ActionConnect, "connect", plain("Connect your Microsoft account"))
	btn.URL = url
	btn.Style = slack.StylePrimary
	return []slack.Block{section(text), slack.NewActionBlock("signin", btn),
		note("The link works once, for 10 minutes, and only for you. Sign in with your own work account.")}
}

// askSignIn tells the inviter that their invitation waits for them to
// connect: in the dialog (if open) and by DM, each with a fresh link.
func (b *Bot) askSignIn(ctx context.Context, inv *flows.Invitation) (flows.MessageRef, error) {
	if b.signIn == nil {
		return flows.MessageRef{}, fmt.Errorf("sign-in notice: %w", flows.ErrUndeliverable)
	}
	who := Escape(inv.Request.Email)
	text := ":key: *Connect your Microsoft account* to invite " + who + ".\n" +
		"invitebot sends invitations as you, with your own Microsoft Entra rights. The invitation waits until you connect (24 hours at most), then goes on by itself."
	if reconnect(inv) {
		text = ":key: *Reconnect your Microsoft account* to invite " + who + ".\n" +
			"Microsoft no longer accepts your earlier sign-in (it expired or was revoked). The invitation waits until you reconnect (24 hours at most), then goes on by itself."
	}
	if inv.Origin.Completes() {
		text += " It was asked for by a workflow (" + Escape(inv.Origin.Name) + "): its step stays in progress until then, and fails as not connected after 24 hours."
	}
	if inv.Origin.Dialog() {
		if link, err := b.signIn.NewLink(ctx, inv.Inviter.UserID); err == nil {
			v := StatusModal(inv, b.svc.Policy(), "")
			v.Blocks.BlockSet = ConnectBlocks(text, link)
			if err := b.showFinal(ctx, inv.ID, externalID(inv), v, true); err != nil { // it waits for a person; as the pick dialog: wait for Slack to apply the submission
				b.log.DebugContext(ctx, "sign-in dialog update", "invitation", inv, "err", err)
			}
		}
	}
	link, err := b.signIn.NewLink(ctx, inv.Inviter.UserID)
	if err != nil {
		return flows.MessageRef{}, err
	}
	ref, err := b.dm(ctx, inv.Inviter.UserID, slack.MsgOptionText("Connect your Microsoft account to invite "+who, false),
		slack.MsgOptionBlocks(append(ConnectBlocks(text, link), note("Invitation `"+inv.ID+"`"))...))
	if err != nil {
		return ref, classify(fmt.Errorf("dm sign-in link: %w", err))
	}
	return ref, nil
}

// reconnect reports whether inv waits because an earlier sign-in stopped
// working.
func reconnect(inv *flows.Invitation) bool {
	for i := len(inv.History) - 1; i >= 0; i-- {
		if ev := inv.History[i]; ev.Action == "awaiting sign-in" {
			return len(ev.Detail) > 0 && ev.Detail != "the inviter has not connected their Microsoft account"
		}
	}
	return false
}

// Connected tells a person their account is connected (DM) and refreshes
// their Home tab. n is how many waiting invitations go on.
func (b *Bot) Connected(ctx context.Context, slackUserID string, c flows.Connection, n int) {
	text := fmt.Sprintf(":white_check_mark: Connected as %s (%s). Your invitations are now sent as you.", Escape(c.Name), Escape(c.Username))
	if n > 0 {
		text += fmt.Sprintf(" %d waiting invitation(s) go on now.", n)
	}
	if _, err := b.dm(ctx, slackUserID, slack.MsgOptionText(text, false)); err != nil {
		b.log.WarnContext(ctx, "dm connected", "user", slackUserID, "err", err)
	}
	b.refreshHomes(ctx, slackUserID)
}

// signInCommand answers /invite-guest connect and disconnect.
func (b *Bot) signInCommand(ctx context.Context, user, verb string) any {
	if b.signIn == nil {
		return ephemeral("invitebot sends invitations with its own identity here (INVITEBOT_INVITE_AS=app): there is no Microsoft account to connect.")
	}
	if verb == "disconnect" {
		was, err := b.signIn.Disconnect(ctx, user)
		if err != nil {
			b.log.ErrorContext(ctx, "disconnect", "user", user, "err", err)
			return ephemeral("Something went wrong; the team has been notified.")
		}
		go b.refreshHomes(detach(ctx), user)
		if !was {
			return ephemeral("Your Microsoft account was not connected. Nothing to remove.")
		}
		return ephemeral("Disconnected: invitebot deleted your stored Microsoft sign-in. Invitations that need you will ask you to connect again.")
	}
	link, err := b.signIn.NewLink(ctx, user)
	if err != nil {
		b.log.ErrorContext(ctx, "connect link", "user", user, "err", err)
		return ephemeral("Something went wrong; the team has been notified.")
	}
	text := "Connect your Microsoft account: invitebot then sends your invitations as you, with your own Microsoft Entra rights."
	if c, err := b.signIn.Connection(ctx, user); err == nil {
		text = fmt.Sprintf("You are connected as %s (%s). To connect again (another sign-in), use the button.", Escape(c.Name), Escape(c.Username))
	}
	return &slack.Msg{ResponseType: slack.ResponseTypeEphemeral, Text: text, Blocks: slack.Blocks{BlockSet: ConnectBlocks(text, link)}}
}

// disconnect is the Home tab's Disconnect button.
func (b *Bot) disconnect(ctx context.Context, user string) {
	if b.signIn == nil {
		return
	}
	if _, err := b.signIn.Disconnect(ctx, user); err != nil {
		b.log.ErrorContext(ctx, "disconnect", "user", user, "err", err)
	}
	b.refreshHomes(ctx, user)
}

// homeSignIn is the Home tab's Microsoft account section (none in app mode).
func (b *Bot) homeSignIn(ctx context.Context, user string) []slack.Block {
	if b.signIn == nil {
		return nil
	}
	c, err := b.signIn.Connection(ctx, user)
	if err == nil {
		btn := slack.NewButtonBlockElement(ActionDisconnect, "disconnect", plain("Disconnect"))
		return []slack.Block{slack.NewSectionBlock(mrkdwn(fmt.Sprintf(":key: Your invitations are sent as *%s* (%s).", Escape(c.Name), Escape(c.Username))),
			nil, slack.NewAccessory(btn)), slack.NewDividerBlock()}
	}
	if !errors.Is(err, flows.ErrSignInNeeded) {
		b.log.WarnContext(ctx, "read sign-in", "user", user, "err", err)
		return nil
	}
	link, err := b.signIn.NewLink(ctx, user)
	if err != nil {
		return nil
	}
	return append(ConnectBlocks(":key: Your Microsoft account is not connected. Invitations are sent as you once it is.", link), slack.NewDividerBlock())
}

package bot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// The audit command's day range: "/invite-guest audit [days]".
const (
	AuditDefaultDays = 30
	AuditMaxDays     = 3650
)

// auditUploadTimeout bounds reading the audit log and uploading it.
const auditUploadTimeout = 2 * time.Minute

// auditCommand handles "/invite-guest audit [days]": it answers at once
// and, for an admin, uploads the audit log of the last days as a CSV file
// to their DM with the bot in the background (Slack's 3-second ack does
// not wait for the store or the upload).
func (b *Bot) auditCommand(ctx context.Context, cmd slack.SlashCommand, args []string) any {
	// A quick refusal; AuditCSV checks again when it reads the log.
	if !b.svc.Policy().IsAdmin(cmd.UserID) {
		return ephemeral("Only invitebot admins can export the audit log.")
	}
	days, msg := parseAuditDays(args)
	if msg != "" {
		return ephemeral(msg)
	}
	who := flows.Inviter{TeamID: cmd.TeamID, UserID: cmd.UserID}
	go func() {
		ctx, cancel := context.WithTimeout(detach(ctx), auditUploadTimeout)
		defer cancel()
		b.sendAudit(ctx, who, days, time.Now())
	}()
	return ephemeral(fmt.Sprintf("Preparing the audit log for the last %s; it will arrive in your DM with invitebot.", dayCount(days)))
}

// parseAuditDays reads the optional days argument; msg, if not empty, is
// the refusal to show.
func parseAuditDays(args []string) (days int, msg string) {
	switch len(args) {
	case 0:
		return AuditDefaultDays, ""
	case 1:
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 1 || n > AuditMaxDays {
			return 0, fmt.Sprintf("The days argument must be a whole number from 1 to %d; `%s` is not. Usage: `/invite-guest audit [days]` (default %d).",
				AuditMaxDays, Escape(args[0]), AuditDefaultDays)
		}
		return n, ""
	}
	return 0, fmt.Sprintf("Usage: `/invite-guest audit [days]`: the days argument (1 to %d, default %d) is the only one.", AuditMaxDays, AuditDefaultDays)
}

func dayCount(days int) string {
	if days == 1 {
		return "day"
	}
	return strconv.Itoa(days) + " days"
}

// sendAudit builds the CSV in memory and uploads it to who's DM; a failure
// is reported to them by DM text.
func (b *Bot) sendAudit(ctx context.Context, who flows.Inviter, days int, now time.Time) {
	since := now.Add(-time.Duration(days) * 24 * time.Hour)
	var buf bytes.Buffer
	n, err := b.svc.AuditCSV(ctx, who, since, &buf)
	if err != nil {
		text := "invitebot could not read its audit log; please try again later."
		if errors.Is(err, flows.ErrNotAuthorized) {
			text = "Only invitebot admins can export the audit log."
		} else {
			b.log.ErrorContext(ctx, "audit export", "user", who.UserID, "err", err)
		}
		b.auditFailed(ctx, who, text)
		return
	}
	ch, _, _, err := b.api.OpenConversationContext(ctx, &slack.OpenConversationParameters{Users: []string{who.UserID}, ReturnIM: true})
	if err != nil {
		b.log.WarnContext(ctx, "open DM for the audit log", "user", who.UserID, "err", err)
		return
	}
	name := "invitebot-audit-" + now.UTC().Format("2006-01-02") + ".csv"
	_, err = b.api.UploadFileContext(ctx, slack.UploadFileParameters{
		Reader: &buf, FileSize: buf.Len(), Filename: name, Channel: ch.ID,
		Title: "invitebot audit log, last " + dayCount(days),
		InitialComment: fmt.Sprintf("The audit log for the last %s (since %s UTC): %d %s.",
			dayCount(days), since.UTC().Format("2006-01-02 15:04"), n, plural(n, "event", "events")),
	})
	if err != nil {
		b.log.WarnContext(ctx, "upload the audit log", "user", who.UserID, "err", err)
		text := "invitebot could not upload the audit log to Slack; please try again later."
		var se slack.SlackErrorResponse
		if errors.As(err, &se) && se.Err == "missing_scope" {
			text = "invitebot could not upload the audit log: its Slack app lacks the `files:write` scope. Reinstall the app from the current manifest."
		}
		b.auditFailed(ctx, who, text)
		return
	}
	b.log.InfoContext(ctx, "audit log exported", "user", who.UserID, "days", days, "events", n)
}

// auditFailed tells who, in their DM, why no audit file arrives.
func (b *Bot) auditFailed(ctx context.Context, who flows.Inviter, text string) {
	if _, err := b.dm(ctx, who.UserID, slack.MsgOptionText(text, false)); err != nil {
		b.log.WarnContext(ctx, "report the audit export failure", "user", who.UserID, "err", err)
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

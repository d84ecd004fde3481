package bot

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

const day = 24 * time.Hour

// expiryChoices are the access periods the dialog offers, in days; 0 is
// "never".
var expiryChoices = []int{30, 90, 180, 365, 0}

// days renders a period in days.
func days(d time.Duration) string {
	n := int(d / day)
	if n == 1 {
		return "1 day"
	}
	return strconv.Itoa(n) + " days"
}

func expiryValue(n int) string {
	if n == 0 {
		return "never"
	}
	return strconv.Itoa(n) + "d"
}

// parseExpiry reads the select's value: "90d", "never", or "" (not in
// the dialog: the policy's default applies).
func parseExpiry(v string) time.Duration {
	switch {
	case v == "":
		return 0
	case v == "never":
		return flows.NoExpiry
	}
	n, err := strconv.Atoi(strings.TrimSuffix(v, "d"))
	if err != nil || n <= 0 {
		return flows.MaxExpiry + day // invalid: Validate says so next to the field
	}
	return time.Duration(n) * day
}

// expiryInput is the dialog's "access expires" select, preset to the
// policy's default.
func expiryInput(p flows.Policy) *slack.InputBlock {
	choices := expiryChoices
	def := int(p.Expiry / day)
	found := false
	for _, n := range choices {
		found = found || n == def
	}
	if !found {
		choices = append([]int{def}, choices...)
	}
	var opts []*slack.OptionBlockObject
	var initial *slack.OptionBlockObject
	for _, n := range choices {
		label := "Never"
		if n > 0 {
			label = "After " + days(time.Duration(n)*day)
		}
		if n == def {
			label += " (default)"
		}
		o := slack.NewOptionBlockObject(expiryValue(n), plain(label), nil)
		if n == def {
			initial = o
		}
		opts = append(opts, o)
	}
	sel := slack.NewOptionsSelectBlockElement(slack.OptTypeStatic, plain("Choose"), BlockExpiresIn, opts...)
	sel.InitialOption = initial
	return slack.NewInputBlock(BlockExpiresIn, plain("Access expires"),
		plain("Before the end you get a DM to extend it; at the end the guest leaves the groups."), sel)
}

// expiryChoice records the sponsor's answer to the expiry reminder.
func (b *Bot) expiryChoice(ctx context.Context, cb slack.InteractionCallback, who flows.Inviter, id string, extend bool) {
	var (
		inv *flows.Invitation
		err error
	)
	if extend {
		inv, err = b.svc.Extend(ctx, id, who)
	} else {
		inv, err = b.svc.LetExpire(ctx, id, who)
	}
	switch {
	case errors.Is(err, flows.ErrNotAuthorized):
		b.reply(ctx, cb, who, "Only the guest's sponsor (who invited them) or an invitebot admin can decide this.")
	case errors.Is(err, flows.ErrNotApplicable):
		b.reply(ctx, cb, who, "That no longer applies: the access already ended or was revoked.")
	case err != nil:
		b.log.ErrorContext(ctx, "expiry choice", "id", id, "err", err)
		b.reply(ctx, cb, who, "invitebot could not record that; please try again.")
	case extend:
		b.reply(ctx, cb, who, fmt.Sprintf("Extended: %s's access now ends %s.", guestName(inv), inv.Expiry.At.UTC().Format("Mon 2 Jan 2006")))
	default:
		b.reply(ctx, cb, who, fmt.Sprintf("OK: %s's access ends %s as planned.", guestName(inv), inv.Expiry.At.UTC().Format("Mon 2 Jan 2006")))
	}
}

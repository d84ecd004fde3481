package bot

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// maxHomeRows bounds the invitations listed on the Home tab: a Home view
// holds at most 100 blocks, and a few go to headings.
const maxHomeRows = 80

// homeGroup orders the Home tab's rows: pending first, then in progress,
// accepted, failed, and ended (revoked or removed).
func homeGroup(inv *flows.Invitation) int {
	switch {
	case inv.Pending():
		return 0
	case !inv.State.Terminal() || inv.Action != nil:
		return 1
	case inv.State == flows.StateAccepted || inv.State == flows.StateNotified:
		return 2
	case inv.State == flows.StateFailed:
		return 3
	}
	return 4
}

// HomeView renders the Home tab for viewer: their invitations, or everyone's
// for an admin (all), each with an overflow menu of the actions viewer may
// take. Every untrusted string is escaped.
func HomeView(invs []*flows.Invitation, viewer string, all bool, p flows.Policy, now time.Time) slack.HomeTabViewRequest {
	admin := p.IsAdmin(viewer)
	invs = slices.Clone(invs)
	slices.SortStableFunc(invs, func(a, b *flows.Invitation) int {
		if c := cmp.Compare(homeGroup(a), homeGroup(b)); c != 0 {
			return c
		}
		if homeGroup(a) == 0 { // pending: oldest first, they need attention
			return sentAt(a).Compare(sentAt(b))
		}
		return b.UpdatedAt.Compare(a.UpdatedAt) // newest first
	})
	title := "Your invitations"
	if all {
		title = "All invitations (you are an invitebot admin)"
	}
	blocks := []slack.Block{slack.NewHeaderBlock(plain(title))}
	if admin {
		blocks = append(blocks, slack.NewActionBlock("home_admin",
			slack.NewButtonBlockElement(ActionConvertOpen, "", plain("Convert an internal user to B2B"))))
	}
	if len(invs) == 0 {
		blocks = append(blocks, section("No invitations yet. Run `/invite-guest` in any channel to invite an external collaborator."))
	}
	headings := []string{"*Waiting for the guest to accept*", "*In progress*", "*Done*", "*Failed*", "*Revoked or removed*"}
	last := -1
	for i, inv := range invs {
		if i == maxHomeRows {
			blocks = append(blocks, note(fmt.Sprintf("…and %d more not shown.", len(invs)-maxHomeRows)))
			break
		}
		if g := homeGroup(inv); g != last {
			blocks = append(blocks, slack.NewDividerBlock(), section(headings[g]))
			last = g
		}
		blocks = append(blocks, homeRow(inv, viewer, all, admin, now))
	}
	return slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: blocks}, CallbackID: "home"}
}

// homeRow is one invitation: who, its state with age or reason, and an
// overflow menu when an action applies.
func homeRow(inv *flows.Invitation, viewer string, all, admin bool, now time.Time) *slack.SectionBlock {
	text := guestName(inv) + "\n"
	switch {
	case inv.Action != nil:
		text += "_" + actionVerb(inv.Action.Kind) + ": in progress_"
	case inv.Pending():
		text += fmt.Sprintf("Pending for %s", flows.Age(now.Sub(sentAt(inv))))
		if inv.Tracking.Resends > 0 {
			text += fmt.Sprintf(" (resent %d×)", inv.Tracking.Resends)
		}
	case inv.State == flows.StateAccepted && inv.Tracking.AcceptedAt.IsZero():
		text += "Accepted"
	case inv.State == flows.StateAccepted:
		text += "Accepted " + inv.Tracking.AcceptedAt.UTC().Format("2 Jan 2006")
	case inv.State == flows.StateNotified:
		text += "Access granted"
	case inv.State == flows.StateFailed:
		text += "Failed: " + FailureText(inv.Failure)
	case inv.State == flows.StateRevoked:
		text += "Revoked " + inv.UpdatedAt.UTC().Format("2 Jan 2006")
	case inv.State == flows.StateRemoved:
		text += "Deleted in Entra"
	default:
		text += progressText(inv)
	}
	if all && inv.Inviter.UserID != viewer {
		text += " · invited by <@" + inv.Inviter.UserID + ">"
	}
	text += " · from " + Escape(inv.Origin.String()) // a bulk file's name is the sender's
	var opts []*slack.OptionBlockObject
	add := func(actionID, label string) {
		opts = append(opts, slack.NewOptionBlockObject(actionID+":"+inv.ID, plain(label), nil))
	}
	if inv.Action == nil {
		mine := inv.Inviter.UserID == viewer
		for _, o := range []struct {
			actionID, label string
			kind            flows.ActionKind
		}{
			{ActionResend, "Resend", flows.ActionResend},
			{ActionRevoke, "Revoke: remove from groups", flows.ActionRevokeGroups},
			{ActionReset, "Reset redemption", flows.ActionReset},
			{ActionDelete, "Delete the guest…", flows.ActionDelete},
		} {
			allowed := admin || (mine && !o.kind.AdminOnly())
			if allowed && flows.Applicable(inv, o.kind) == nil {
				add(o.actionID, o.label)
			}
		}
	}
	var acc *slack.Accessory
	if len(opts) > 0 {
		acc = slack.NewAccessory(slack.NewOverflowBlockElement(ActionOverflow, opts...))
	}
	return slack.NewSectionBlock(mrkdwn(text), nil, acc)
}

// homeEvery is how often a person's Home tab is re-published while their
// invitations change (homeChanged). Opening the tab (app_home_opened) and
// the person's own button actions publish it at once.
const homeEvery = time.Minute

// homes records when each Home tab was published, and the re-publishes
// that are due.
type homes struct {
	mu     sync.Mutex
	last   map[string]time.Time   // user → last published by this process
	due    map[string]*time.Timer // user → a scheduled re-publish
	closed bool
}

// publishHome renders and publishes user's Home tab. It records the time
// first: a change from then on is re-published (homeChanged).
func (b *Bot) publishHome(ctx context.Context, user string) error {
	b.homes.mu.Lock()
	if b.homes.last == nil {
		b.homes.last = map[string]time.Time{}
	}
	b.homes.last[user] = time.Now()
	b.homes.mu.Unlock()
	invs, all, err := b.svc.InvitationsFor(ctx, flows.Inviter{UserID: user})
	if err != nil {
		return err
	}
	v := HomeView(invs, user, all, b.svc.Policy(), time.Now())
	v.Blocks.BlockSet = append(b.homeSignIn(ctx, user), v.Blocks.BlockSet...)
	_, err = b.api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: user, View: v})
	return err
}

// homeChanged tells that user's invitations changed. Their Home tab is
// re-published at most once per homeEvery, and only if this process has
// published it before: a tab never opened since the start is rendered when
// it is opened. The re-publish is best effort (dropped rather than queued
// behind views.publish's rate limit).
func (b *Bot) homeChanged(user string) {
	h := &b.homes
	h.mu.Lock()
	defer h.mu.Unlock()
	last, seen := h.last[user]
	if !seen || h.due[user] != nil || h.closed {
		return
	}
	if h.due == nil {
		h.due = map[string]*time.Timer{}
	}
	h.due[user] = time.AfterFunc(max(time.Until(last.Add(b.homeEvery)), 0), func() {
		h.mu.Lock()
		delete(h.due, user)
		h.mu.Unlock()
		b.goJob(b.jobsCtx, func(ctx context.Context) {
			ctx, cancel := context.WithTimeout(bestEffort(ctx), 30*time.Second)
			defer cancel()
			if err := b.publishHome(ctx, user); err != nil {
				b.log.DebugContext(ctx, "publish home", "user", user, "err", err)
			}
		})
	})
}

// stopHomes cancels the scheduled re-publishes (Close).
func (b *Bot) stopHomes() {
	h := &b.homes
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for u, t := range h.due {
		t.Stop()
		delete(h.due, u)
	}
}

// refreshHomes re-publishes the Home tabs of the users given at once (best
// effort): for changes a person's own action made, which they expect to see.
func (b *Bot) refreshHomes(ctx context.Context, users ...string) {
	for i, u := range users {
		if u == "" || slices.Contains(users[:i], u) {
			continue
		}
		if err := b.publishHome(ctx, u); err != nil {
			b.log.DebugContext(ctx, "publish home", "user", u, "err", err)
		}
	}
}

// event handles an Events API callback (HTTP or Socket Mode). The answer is
// immediate; work runs in the background. An error means the event was
// not taken (a workflow step could not be recorded): it must not be
// acknowledged, so that Slack sends it again.
func (b *Bot) event(ctx context.Context, raw json.RawMessage) error {
	var cb struct {
		Type       string `json:"type"`
		TeamID     string `json:"team_id"`
		Enterprise string `json:"enterprise_id"`
		APIAppID   string `json:"api_app_id"`
		Event      struct {
			Type string          `json:"type"`
			User json.RawMessage `json:"user"` // an ID; user_change: the user object
			Tab  string          `json:"tab"`
			// file_shared
			UserID    string `json:"user_id"`
			ChannelID string `json:"channel_id"`
			FileID    string `json:"file_id"`
		} `json:"event"`
	}
	if err := json.Unmarshal(raw, &cb); err != nil || cb.Type != "event_callback" {
		return nil
	}
	if b.foreign(cb.TeamID, cb.Enterprise, cb.APIAppID) {
		b.log.WarnContext(ctx, "refused an event for another workspace or app", "team", cb.TeamID, "app", cb.APIAppID)
		return nil
	}
	if cb.Event.Type == "function_executed" {
		var fe struct {
			Event json.RawMessage `json:"event"`
		}
		_ = json.Unmarshal(raw, &fe)
		return b.functionExecuted(ctx, cb.TeamID, fe.Event)
	}
	var user string
	if json.Unmarshal(cb.Event.User, &user) != nil {
		var u struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(cb.Event.User, &u)
		user = u.ID
	}
	if cb.Event.Type == "user_change" && user != "" {
		b.profiles.forget(user) // their name or email may have changed
		return nil
	}
	if cb.Event.Type == "file_shared" {
		b.fileShared(ctx, cb.Event.UserID, cb.Event.ChannelID, cb.Event.FileID)
		return nil
	}
	if cb.Event.Type == "app_home_opened" && cb.Event.Tab == "home" && user != "" {
		go func() {
			ctx, cancel := context.WithTimeout(detach(ctx), 30*time.Second)
			defer cancel()
			if err := b.publishHome(ctx, user); err != nil {
				b.log.WarnContext(ctx, "publish home", "user", user, "err", err)
			}
		}()
	}
	return nil
}

// ConfirmDeleteModal asks an admin to confirm deleting a guest.
func ConfirmDeleteModal(inv *flows.Invitation) slack.ModalViewRequest {
	text := fmt.Sprintf(":warning: Delete %s from Microsoft Entra? The user object goes to the recycle bin (restorable for 30 days); "+
		"the guest loses access to everything at once.", guestName(inv))
	b := section(text)
	b.BlockID = BlockConfirm
	return slack.ModalViewRequest{
		Type: slack.VTModal, CallbackID: CallbackConfirmDelete,
		Title: plain("Delete guest"), Submit: plain("Delete"), Close: plain("Cancel"),
		Blocks:          slack.Blocks{BlockSet: []slack.Block{b}},
		PrivateMetadata: metadata{Invitation: inv.ID}.String(),
	}
}

// ConvertModal asks an admin for the internal account and the external
// address of a conversion to B2B.
func ConvertModal() slack.ModalViewRequest {
	return slack.ModalViewRequest{
		Type: slack.VTModal, CallbackID: CallbackConvert,
		Title: plain("Convert to B2B"), Submit: plain("Convert"), Close: plain("Cancel"),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			section("Turns an internal account into a B2B user who signs in with their external identity, keeping its object ID, groups and app assignments. The account's *mail* must already be the external address."),
			textInput(BlockConvertAccount, "Internal account", "Its user principal name (user@ourcompany.com) or object ID", "", 256, false, false),
			textInput(BlockEmail, "External email", "The address the person will sign in with", "", flows.MaxEmailLen, false, false),
		}},
	}
}

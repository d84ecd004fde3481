package bot

import (
	"context"
	"strings"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// NoticeEventType is the message metadata event_type of the messages that
// deliver a flows.Notice; event_payload.notice_id is the notice's ID.
const NoticeEventType = "invitebot_notice"

// noticeHistory is how many of a DM's latest messages are searched for a
// notice that may have been posted already.
const noticeHistory = 100

type noticeKey struct{}

// withNotice marks the messages posted with ctx as delivering notice n.
func withNotice(ctx context.Context, n flows.Notice) context.Context {
	if n.ID == "" {
		return ctx
	}
	return context.WithValue(ctx, noticeKey{}, n)
}

// post posts a message to channel. A message that delivers a notice
// carries the notice's ID as message metadata; when the notice is being
// recovered (an earlier attempt may have posted it and died before that
// was recorded), a DM's recent history is searched for that ID first, and
// a message found there is returned instead of posting another.
func (b *Bot) post(ctx context.Context, channel string, opts ...slack.MsgOption) (flows.MessageRef, error) {
	n, ok := ctx.Value(noticeKey{}).(flows.Notice)
	if ok {
		if n.Recover && (strings.HasPrefix(channel, "U") || strings.HasPrefix(channel, "W")) {
			// A DM addressed by user ID: its history needs the channel ID
			// (conversations.open, only when recovering).
			if c, _, _, err := b.api.OpenConversationContext(ctx, &slack.OpenConversationParameters{Users: []string{channel}, ReturnIM: true}); err == nil {
				channel = c.ID
			} else {
				b.log.WarnContext(ctx, "conversations.open: cannot look for an earlier post of the notice; posting it", "err", err)
			}
		}
		if n.Recover && strings.HasPrefix(channel, "D") {
			if ref, found := b.findNotice(ctx, channel, n.ID); found {
				b.log.InfoContext(ctx, "notice already posted; not posting it again", "kind", n.Kind, "channel", channel, "ts", ref.TS)
				return ref, nil
			}
		}
		opts = append(opts, slack.MsgOptionMetadata(slack.SlackMetadata{
			EventType: NoticeEventType, EventPayload: map[string]any{"notice_id": n.ID}}))
	}
	ch, ts, err := b.api.PostMessageContext(ctx, channel, opts...)
	return flows.MessageRef{Channel: ch, TS: ts}, err
}

// findNotice looks for the message carrying notice id among channel's
// latest messages. If Slack cannot tell, it says not found: posting again
// is the lesser harm than leaving the notice undelivered.
func (b *Bot) findNotice(ctx context.Context, channel, id string) (flows.MessageRef, bool) {
	r, err := b.api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{
		ChannelID: channel, Limit: noticeHistory, IncludeAllMetadata: true})
	if err != nil {
		b.log.WarnContext(ctx, "conversations.history: cannot tell whether the notice was posted; posting it", "channel", channel, "err", err)
		return flows.MessageRef{}, false
	}
	for _, m := range r.Messages {
		if m.Metadata.EventType == NoticeEventType && m.Metadata.EventPayload["notice_id"] == id {
			return flows.MessageRef{Channel: channel, TS: m.Timestamp}, true
		}
	}
	return flows.MessageRef{}, false
}

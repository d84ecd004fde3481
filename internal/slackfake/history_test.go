package slackfake

import (
	"testing"

	"github.com/slack-go/slack"
)

// Ensure conversations.history returns a channel's messages newest first,
// pages them, and returns their metadata only when asked to.
func TestConversationsHistory(t *testing.T) {
	s := New()
	defer s.Close()
	api := client(s)
	ctx := t.Context()
	meta := slack.MsgOptionMetadata(slack.SlackMetadata{EventType: "invitebot_notice", EventPayload: map[string]any{"notice_id": "inv_1/done"}})
	if _, _, err := api.PostMessageContext(ctx, "D1", slack.MsgOptionText("first", false), meta); err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.PostMessageContext(ctx, "D2", slack.MsgOptionText("elsewhere", false)); err != nil {
		t.Fatal(err)
	}
	if _, err := api.PostEphemeralContext(ctx, "D1", "U1", slack.MsgOptionText("only you", false)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.PostMessageContext(ctx, "D1", slack.MsgOptionText("second", false)); err != nil {
		t.Fatal(err)
	}

	r, err := api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: "D1", IncludeAllMetadata: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Messages) != 2 || r.Messages[0].Text != "second" || r.Messages[1].Text != "first" || r.HasMore {
		t.Fatalf("history = %+v, want second then first (no ephemeral, no other channel)", r.Messages)
	}
	if m := r.Messages[1].Metadata; m.EventType != "invitebot_notice" || m.EventPayload["notice_id"] != "inv_1/done" {
		t.Errorf("metadata = %+v", m)
	}
	r, err = api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: "D1"})
	if err != nil || r.Messages[1].Metadata.EventType != "" {
		t.Errorf("without include_all_metadata: %v, metadata %+v, want none", err, r.Messages[1].Metadata)
	}
	r, err = api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: "D1", Limit: 1})
	if err != nil || len(r.Messages) != 1 || !r.HasMore || r.ResponseMetaData.NextCursor == "" {
		t.Fatalf("limit 1: %v %+v", err, r)
	}
	r, err = api.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: "D1", Limit: 1, Cursor: r.ResponseMetaData.NextCursor})
	if err != nil || len(r.Messages) != 1 || r.Messages[0].Text != "first" || r.HasMore {
		t.Fatalf("second page: %v %+v", err, r)
	}
}

package slackfake

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/slack-go/slack"
)

func homeTab(n int) slack.HomeTabViewRequest {
	blocks := make([]slack.Block, n)
	for i := range blocks {
		blocks[i] = slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "hi", false, false), nil, nil)
	}
	return slack.HomeTabViewRequest{Type: slack.VTHomeTab, Blocks: slack.Blocks{BlockSet: blocks}}
}

func TestViewsPublish(t *testing.T) {
	s := New()
	defer s.Close()
	api := client(s)
	ctx := t.Context()
	if _, ok := s.HomeView("U0ANN"); ok {
		t.Fatal("home view before any publish")
	}
	v, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U0ANN", View: homeTab(100)})
	if err != nil || v.ID != HomeViewID("U0ANN") || v.Hash == "" || v.Type != slack.VTHomeTab || len(v.Blocks.BlockSet) != 100 {
		t.Fatalf("publish: %v %+v", err, v)
	}
	raw, ok := s.HomeView("U0ANN")
	var stored slack.View
	if !ok || json.Unmarshal(raw, &stored) != nil || stored.Hash != v.Hash || stored.ID != v.ID {
		t.Fatalf("HomeView = %s, %v", raw, ok)
	}
	if _, ok := s.HomeView("U0BOB"); ok {
		t.Error("Bob has Ann's home view")
	}

	stale := "1"
	if _, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U0ANN", View: homeTab(1), Hash: &stale}); slackError(err) != "hash_conflict" {
		t.Errorf("stale hash: %v, want hash_conflict", err)
	}
	v2, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U0ANN", View: homeTab(2), Hash: &v.Hash})
	if err != nil || v2.ID != v.ID || v2.Hash == v.Hash {
		t.Fatalf("publish with current hash: %v %+v", err, v2)
	}
	if _, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U0ANN", View: homeTab(1), Hash: &v.Hash}); slackError(err) != "hash_conflict" {
		t.Errorf("previous hash: %v, want hash_conflict", err)
	}
	if _, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U0ANN", View: homeTab(101)}); slackError(err) != "invalid_arguments" {
		t.Errorf("101 blocks: %v, want invalid_arguments", err)
	}
	modal := homeTab(1)
	modal.Type = slack.VTModal
	if _, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U0ANN", View: modal}); slackError(err) != "invalid_arguments" {
		t.Errorf("modal published: %v, want invalid_arguments", err)
	}
	big := homeTab(1)
	big.PrivateMetadata = strings.Repeat("m", 3001)
	if _, err := api.PublishViewContext(ctx, slack.PublishViewContextRequest{UserID: "U0ANN", View: big}); slackError(err) != "invalid_arguments" {
		t.Errorf("3001-char private_metadata: %v, want invalid_arguments", err)
	}
	raw, _ = s.HomeView("U0ANN")
	if json.Unmarshal(raw, &stored) != nil || stored.Hash != v2.Hash || len(stored.Blocks.BlockSet) != 2 {
		t.Errorf("failed publishes changed the home view: %s", raw)
	}
	// A modal still cannot be opened as a Home tab, nor a Home tab as a modal.
	home := homeTab(1)
	if _, err := api.OpenViewContext(ctx, s.NewTriggerID(), slack.ModalViewRequest{Type: slack.VTHomeTab, Title: slack.NewTextBlockObject(slack.PlainTextType, "x", false, false), Blocks: home.Blocks}); slackError(err) != "invalid_arguments" {
		t.Errorf("home view opened as modal: %v", err)
	}
}

func TestViewsUpdateHash(t *testing.T) {
	s := New()
	defer s.Close()
	api := client(s)
	ctx := t.Context()
	v, err := api.OpenViewContext(ctx, s.NewTriggerID(), modal("One"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := api.UpdateViewContext(ctx, modal("Two"), "", v.Hash, v.ID)
	if err != nil || u.Hash == v.Hash {
		t.Fatalf("update with current hash: %v %+v", err, u)
	}
	if _, err := api.UpdateViewContext(ctx, modal("Three"), "", v.Hash, v.ID); slackError(err) != "hash_conflict" {
		t.Errorf("stale hash: %v, want hash_conflict", err)
	}
	// SetView (a response_action "update") keeps the ID and changes the hash.
	s.SetView(v.ID, json.RawMessage(`{"type":"modal","title":{"type":"plain_text","text":"Four"},"blocks":[]}`))
	raw, _ := s.View(v.ID)
	var after slack.View
	if json.Unmarshal(raw, &after) != nil || after.ID != v.ID || after.Hash == "" || after.Hash == u.Hash {
		t.Errorf("after SetView: %s", raw)
	}
}

func TestChatUpdate(t *testing.T) {
	s := New()
	defer s.Close()
	api := client(s)
	ctx := t.Context()
	section := func(text string) slack.MsgOption {
		return slack.MsgOptionBlocks(slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil))
	}

	if _, _, _, err := api.UpdateMessageContext(ctx, "D0ANN", "1.000001", slack.MsgOptionText("x", false)); slackError(err) != "message_not_found" {
		t.Errorf("unknown message: %v, want message_not_found", err)
	}
	// Posting to a user ID lands in the DM and answers its D… ID.
	ch, ts, err := api.PostMessageContext(ctx, "U0ANN", slack.MsgOptionText("Working…", false), section("working"))
	if err != nil || ch != DMChannel("U0ANN") {
		t.Fatalf("post: %q %v", ch, err)
	}
	if _, err := api.PostEphemeralContext(ctx, "C1", "U0ANN", slack.MsgOptionText("psst", false)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "U0ANN", ts, slack.MsgOptionText("x", false)); slackError(err) != "channel_not_found" {
		t.Errorf("update by user ID: %v, want channel_not_found", err)
	}
	var many []slack.Block
	for range 51 {
		many = append(many, slack.NewDividerBlock())
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, ch, ts, slack.MsgOptionBlocks(many...)); slackError(err) != "invalid_blocks" {
		t.Errorf("51 blocks: %v, want invalid_blocks", err)
	}

	gotCh, gotTS, text, err := api.UpdateMessageContext(ctx, ch, ts, slack.MsgOptionText("Done", false), section("done"))
	if err != nil || gotCh != ch || gotTS != ts || text != "Done" {
		t.Fatalf("update: %q %q %q %v", gotCh, gotTS, text, err)
	}
	dms := s.DMs("U0ANN")
	if len(dms) != 1 || dms[0].TS != ts || dms[0].Text != "Done" || !strings.Contains(string(dms[0].Blocks), `"done"`) || dms[0].Edited != 1 {
		t.Fatalf("DMs after update = %+v", dms)
	}
	// Text only: the blocks stay, as in Slack.
	if _, _, _, err := api.UpdateMessageContext(ctx, ch, ts, slack.MsgOptionText("Done!", false)); err != nil {
		t.Fatal(err)
	}
	m, ok := s.Message(ch, ts)
	if !ok || m.Text != "Done!" || !strings.Contains(string(m.Blocks), `"done"`) || m.Edited != 2 {
		t.Errorf("after text-only update: %+v", m)
	}
	// An empty blocks array removes them.
	if _, _, _, err := api.UpdateMessageContext(ctx, ch, ts, slack.MsgOptionBlocks()); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message(ch, ts); len(m.Blocks) != 0 || m.Text != "Done!" {
		t.Errorf("after blocks=[]: %+v", m)
	}
	if all := s.Messages(); len(all) != 2 || !all[1].Ephemeral {
		t.Errorf("messages = %+v", all)
	}
}

func TestMessageMetadata(t *testing.T) {
	s := New()
	defer s.Close()
	api := client(s)
	ctx := t.Context()
	meta := slack.SlackMetadata{EventType: "invitation", EventPayload: map[string]any{"id": "inv-1"}}
	ch, ts, err := api.PostMessageContext(ctx, "D0ANN", slack.MsgOptionText("hi", false), slack.MsgOptionMetadata(meta))
	if err != nil {
		t.Fatal(err)
	}
	var got slack.SlackMetadata
	m, _ := s.Message(ch, ts)
	if json.Unmarshal(m.Metadata, &got) != nil || got.EventType != "invitation" || got.EventPayload["id"] != "inv-1" {
		t.Fatalf("metadata = %s", m.Metadata)
	}
	// chat.update without metadata keeps it.
	if _, _, _, err := api.UpdateMessageContext(ctx, ch, ts, slack.MsgOptionText("hi again", false)); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Message(ch, ts); !strings.Contains(string(m.Metadata), "inv-1") {
		t.Errorf("metadata after update = %s", m.Metadata)
	}
	if _, _, err := api.PostMessageContext(ctx, "D0ANN", slack.MsgOptionText("hi", false), slack.MsgOptionMetadata(slack.SlackMetadata{})); slackError(err) != "invalid_metadata_format" {
		t.Errorf("metadata without event_type: %v", err)
	}
	if _, _, err := api.PostMessageContext(ctx, "D0ANN", slack.MsgOptionText("plain", false)); err != nil {
		t.Fatal(err)
	}
	if dms := s.DMs("U0ANN"); len(dms) != 2 || dms[1].Metadata != nil {
		t.Errorf("DMs = %+v", dms)
	}
}

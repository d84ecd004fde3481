package slackfake

import "testing"

// Rows with the same action_id (a Home tab's overflow menus) are told
// apart by the option chosen, and get the block IDs Slack generates.
func TestFindActionPicksTheRowOfferingTheValue(t *testing.T) {
	row := func(v string) any {
		return map[string]any{"type": "section", "accessory": map[string]any{"type": "overflow", "action_id": "menu",
			"options": []any{map[string]any{"value": v, "text": map[string]any{"type": "plain_text", "text": v}}}}}
	}
	blocks := []any{row("a"), row("b")}
	a, err := findAction(blocks, "menu", "b", "")
	if err != nil {
		t.Fatal(err)
	}
	if a["block_id"] != "blk1" || a["selected_option"].(map[string]any)["value"] != "b" {
		t.Errorf("action = %v, want the second row (blk1) with option b", a)
	}
	if a, err := findAction(blocks, "menu", "b", "blk1"); err != nil || a["block_id"] != "blk1" {
		t.Errorf("by generated block ID: %v, %v", a, err)
	}
	if _, err := findAction(blocks, "menu", "c", ""); err == nil {
		t.Error("an option no row offers was found")
	}
}

package bot_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
)

// Ensure the connect prompt is a link button to the given URL.
func TestConnectBlocks(t *testing.T) {
	const link = "https://invitebot.contoso.com/auth/start?l=abc"
	raw, err := json.Marshal(bot.ConnectBlocks("Connect <b>", link))
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	if !strings.Contains(s, `"url":"`+link+`"`) || !strings.Contains(s, "Connect your Microsoft account") ||
		!strings.Contains(s, `"action_id":"`+bot.ActionConnect+`"`) {
		t.Errorf("ConnectBlocks = %s", s)
	}
}

// Ensure the person's own refusal is worded as theirs, with Graph's
// message escaped.
func TestFailureTextInviter(t *testing.T) {
	got := bot.FailureText(&flows.Failure{Code: flows.FailInviterRefused, Message: "Insufficient <privileges>"})
	if !strings.HasPrefix(got, "Microsoft Entra refused: you may not invite guests in this tenant (ask an admin for the Guest Inviter role).") ||
		!strings.Contains(got, "Insufficient &lt;privileges&gt;") {
		t.Errorf("inviter_refused: %s", got)
	}
	got = bot.FailureText(&flows.Failure{Code: flows.FailNotConnected, Message: "the inviter did not connect"})
	if !strings.Contains(got, "/invite-guest connect") {
		t.Errorf("not_connected: %s", got)
	}
}

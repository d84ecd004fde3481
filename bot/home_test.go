package bot

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/invitebot/invitebot/flows"
)

func homeInvitation(id, inviter string, state flows.State, external string, sent time.Time) *flows.Invitation {
	return &flows.Invitation{
		ID: id, Inviter: flows.Inviter{TeamID: "T1", UserID: inviter}, State: state, ObjectID: "obj-" + id,
		Request:     flows.Request{Email: id + "@fabrikam.com", DisplayName: "<!channel> " + id},
		GroupsAdded: []string{"g1"}, InvitedAt: sent, CreatedAt: sent, UpdatedAt: sent,
		Tracking: flows.Tracking{External: external},
	}
}

// overflowOptions returns each row's overflow option values, by invitation.
func overflowOptions(t *testing.T, raw []byte) map[string][]string {
	t.Helper()
	var v struct {
		Blocks []struct {
			Accessory *struct {
				ActionID string `json:"action_id"`
				Options  []struct {
					Value string `json:"value"`
				} `json:"options"`
			} `json:"accessory"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, b := range v.Blocks {
		if b.Accessory == nil || b.Accessory.ActionID != ActionOverflow {
			continue
		}
		for _, o := range b.Accessory.Options {
			action, id, _ := strings.Cut(o.Value, ":")
			out[id] = append(out[id], action)
		}
	}
	return out
}

// marshal encodes v as Slack reads it: Go's \u escapes of & < > undone.
func marshal(v any) []byte {
	raw, _ := json.Marshal(v)
	return []byte(strings.NewReplacer(`\u0026`, "&", `\u003c`, "<", `\u003e`, ">").Replace(string(raw)))
}

func TestHomeViewActionsByRole(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	invs := []*flows.Invitation{
		homeInvitation("acc", "UANN", flows.StateAccepted, flows.ExternalAccepted, now.Add(-96*time.Hour)),
		homeInvitation("pend", "UANN", flows.StateNotified, flows.ExternalPending, now.Add(-50*time.Hour)),
		homeInvitation("fail", "UANN", flows.StateFailed, "", now.Add(-time.Hour)),
	}
	invs[2].Failure = &flows.Failure{Code: flows.FailRejected, Message: "bad <address>"}
	p := flows.Policy{Admins: []string{"UADMIN"}, Groups: []flows.Group{{ID: "g1", Name: "Portal"}}}

	raw := marshal(HomeView(invs, "UANN", false, p, now))
	got := string(raw)
	if i, j := strings.Index(got, "pend@"), strings.Index(got, "acc@"); i < 0 || j < 0 || i > j {
		t.Errorf("pending invitation not listed first:\n%s", got)
	}
	for _, want := range []string{"Pending for 2 days", "Failed: Microsoft Graph rejected the request: bad &lt;address&gt;", "&lt;!channel&gt; pend"} {
		if !strings.Contains(got, want) {
			t.Errorf("home lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "<!channel>") {
		t.Error("a display name's mention reached the Home tab unescaped")
	}
	opts := overflowOptions(t, raw)
	if fmt.Sprint(opts["pend"]) != "[resend revoke]" || fmt.Sprint(opts["acc"]) != "[revoke]" || len(opts["fail"]) != 0 {
		t.Errorf("inviter's options = %v, want resend+revoke on pending, revoke on accepted, none on failed", opts)
	}
	if strings.Contains(got, ActionConvertOpen) {
		t.Error("a non-admin sees the convert button")
	}

	raw = marshal(HomeView(invs, "UADMIN", true, p, now))
	opts = overflowOptions(t, raw)
	if fmt.Sprint(opts["pend"]) != "[resend revoke reset_redemption delete_guest]" {
		t.Errorf("admin's options on a pending invitation = %v", opts["pend"])
	}
	if got := string(raw); !strings.Contains(got, "invited by <@UANN>") || !strings.Contains(got, ActionConvertOpen) {
		t.Errorf("admin home lacks the inviter or the convert button:\n%s", got)
	}
}

func TestHomeViewFitsBlockKit(t *testing.T) {
	now := time.Now()
	var invs []*flows.Invitation
	for i := range 150 {
		invs = append(invs, homeInvitation(fmt.Sprintf("i%03d", i), "UANN", flows.StateNotified, flows.ExternalPending, now))
	}
	v := HomeView(invs, "UANN", false, flows.Policy{}, now)
	if n := len(v.Blocks.BlockSet); n > 100 {
		t.Errorf("home view has %d blocks, Slack allows 100", n)
	}
	raw := marshal(v)
	if !strings.Contains(string(raw), "and 70 more not shown") {
		t.Error("home view does not say how many invitations it left out")
	}
}

func TestSplitTextKeepsTheLinkWhole(t *testing.T) {
	link := "https://login.microsoftonline.com/redeem?rd=" + strings.Repeat("x", 400)
	text := strings.Repeat("a", 2000) + "\n\n" + strings.Repeat("&amp;", 150) + "\n" + link + "\n" + strings.Repeat("b", 1500)
	n := maxTextLen - 30
	parts := splitText(text, n)
	whole := 0
	for _, p := range parts {
		if utf8.RuneCountInString(p) > n {
			t.Errorf("part of %d characters, limit %d", utf8.RuneCountInString(p), n)
		}
		if strings.Contains(p, link) {
			whole++
		}
	}
	if whole != 1 {
		t.Errorf("the link is whole in %d parts, want 1 (parts: %d)", whole, len(parts))
	}
}

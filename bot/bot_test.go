package bot

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

func TestParseCommandText(t *testing.T) {
	tests := []struct {
		text string
		want Prefill
	}{
		{"", Prefill{}},
		{"   ", Prefill{}},
		{"bob@contoso.com", Prefill{Email: "bob@contoso.com"}},
		{"bob@contoso.com Bob  Smith", Prefill{Email: "bob@contoso.com", DisplayName: "Bob Smith"}},
		{"<mailto:bob@contoso.com|bob@contoso.com> Bob", Prefill{Email: "bob@contoso.com", DisplayName: "Bob"}},
		{"<bob@contoso.com>", Prefill{Email: "bob@contoso.com"}},
		{"Bob Smith", Prefill{DisplayName: "Bob Smith"}},
	}
	for _, tt := range tests {
		if got := ParseCommandText(tt.text); got != tt.want {
			t.Errorf("ParseCommandText(%q) = %+v, want %+v", tt.text, got, tt.want)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"<!channel> & co":      "&lt;!channel&gt; &amp; co",
		"<@U123|boss>":         "&lt;@U123|boss&gt;",
		"<https://evil|click>": "&lt;https://evil|click&gt;",
		"plain *bold* name":    "plain *bold* name",
		"&amp;":                "&amp;amp;",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// blockIDs returns the view's block IDs and checks the limits Slack
// enforces on modals.
func blockIDs(t *testing.T, v slack.ModalViewRequest) []string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 250_000 {
		t.Errorf("view is %d bytes", len(raw))
	}
	if n := utf8.RuneCountInString(v.Title.Text); n == 0 || n > 24 {
		t.Errorf("title %q has %d characters (1–24)", v.Title.Text, n)
	}
	if len(v.Blocks.BlockSet) > 100 {
		t.Errorf("%d blocks", len(v.Blocks.BlockSet))
	}
	var view struct {
		Blocks []struct {
			BlockID string `json:"block_id"`
			Element struct {
				ActionID     string `json:"action_id"`
				MaxLength    int    `json:"max_length"`
				InitialValue string `json:"initial_value"`
				Options      []struct {
					Text        struct{ Text string }  `json:"text"`
					Description *struct{ Text string } `json:"description"`
				} `json:"options"`
			} `json:"element"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(raw, &view); err != nil {
		t.Fatal(err)
	}
	var ids []string
	seen := map[string]bool{}
	for _, b := range view.Blocks {
		if b.BlockID == "" {
			continue
		}
		if seen[b.BlockID] {
			t.Errorf("duplicate block_id %q", b.BlockID)
		}
		seen[b.BlockID] = true
		ids = append(ids, b.BlockID)
		if b.Element.ActionID != b.BlockID {
			t.Errorf("block %q has action_id %q", b.BlockID, b.Element.ActionID)
		}
		if b.Element.MaxLength > 0 && utf8.RuneCountInString(b.Element.InitialValue) > b.Element.MaxLength {
			t.Errorf("block %q: initial value longer than max_length %d", b.BlockID, b.Element.MaxLength)
		}
		if len(b.Element.Options) > 100 {
			t.Errorf("block %q has %d options", b.BlockID, len(b.Element.Options))
		}
		for _, o := range b.Element.Options {
			if utf8.RuneCountInString(o.Text.Text) > 75 || (o.Description != nil && utf8.RuneCountInString(o.Description.Text) > 75) {
				t.Errorf("block %q: option text over 75 characters: %q", b.BlockID, o.Text.Text)
			}
		}
	}
	return ids
}

func TestInviteModal(t *testing.T) {
	groups := make([]flows.Group, 100)
	for i := range groups {
		groups[i] = flows.Group{ID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i), Name: strings.Repeat("Group ", 20) + strconv.Itoa(i)}
	}
	p := flows.Policy{DefaultRedirectURL: "https://myapps.microsoft.com", Groups: groups}
	base := []string{BlockEmail, BlockDisplayName, BlockRedirectURL, BlockDelivery, BlockMessage, BlockCC}
	attrs := []string{BlockExpiresIn, BlockGivenName, BlockSurname, BlockCompanyName, BlockJobTitle}
	tests := []struct {
		name   string
		pre    Prefill
		policy flows.Policy
		admin  bool
		want   []string
	}{
		{"Inviter", Prefill{}, p, false, append(append(append([]string{}, base...), BlockGroups), attrs...)},
		{"Admin", Prefill{}, p, true, append(append(append([]string{}, base...), BlockUserType, BlockGroups), attrs...)},
		{"NoGroups", Prefill{}, flows.Policy{}, false, append(append([]string{}, base...), attrs...)},
		{"OverlongPrefill", Prefill{Email: strings.Repeat("b", 300) + "@x.com", DisplayName: strings.Repeat("n", 400)}, p, false,
			append(append(append([]string{}, base...), BlockGroups), attrs...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := InviteModal(tt.pre, tt.policy, tt.admin)
			if v.CallbackID != CallbackInvite {
				t.Errorf("callback_id = %q", v.CallbackID)
			}
			if got := blockIDs(t, v); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("blocks = %v\nwant     %v", got, tt.want)
			}
		})
	}
	raw, _ := json.Marshal(InviteModal(Prefill{Email: "bob@contoso.com", DisplayName: "Bob"}, p, false))
	for _, want := range []string{`"initial_value":"bob@contoso.com"`, `"initial_value":"Bob"`, `"initial_value":"https://myapps.microsoft.com"`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("pre-filled dialog lacks %s", want)
		}
	}
}

func TestPickModal(t *testing.T) {
	for _, n := range []int{1, 9, 10, 250} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			inv := &flows.Invitation{ID: "inv_1", Request: flows.Request{Email: "<!here>@x.com"}}
			for i := range n {
				inv.Matches = append(inv.Matches, flows.DirectoryUser{ID: fmt.Sprintf("id-%d", i),
					DisplayName: strings.Repeat("Very long name ", 10), Mail: "a@x.com", UserType: flows.UserTypeGuest})
			}
			v := PickModal(inv)
			if ids := blockIDs(t, v); strings.Join(ids, ",") != BlockPick {
				t.Errorf("input blocks = %v", ids)
			}
			radio := v.Blocks.BlockSet[1].(*slack.InputBlock).Element.(*slack.RadioButtonsBlockElement)
			shown := min(n, 9)
			if len(radio.Options) != shown+1 || radio.Options[shown].Value != PickNew {
				t.Errorf("%d options, last %q; want %d matches and %q", len(radio.Options), radio.Options[len(radio.Options)-1].Value, shown, PickNew)
			}
			raw, _ := json.Marshal(v)
			more := fmt.Sprintf("and %d more", n-shown)
			if got := bytes.Contains(raw, []byte(more)); got != (n > shown) {
				t.Errorf("%q shown = %v", more, got)
			}
			if bytes.Contains(raw, []byte("<!here>")) {
				t.Error("unescaped mention in the pick dialog")
			}
			if v.ExternalID != "invitebot-inv_1" || !v.NotifyOnClose {
				t.Errorf("external_id %q notify_on_close %v", v.ExternalID, v.NotifyOnClose)
			}
		})
	}
}

func TestStatusModalAndFailureText(t *testing.T) {
	p := flows.Policy{Groups: []flows.Group{{ID: "g1", Name: "<!channel> group"}}}
	inv := &flows.Invitation{ID: "inv_2", ObjectID: "oid", State: flows.StateNotified, GroupsAdded: []string{"g1"},
		Request: flows.Request{Email: "bob@x.com", DisplayName: "<!channel> & co", UserType: flows.UserTypeGuest}}
	raw, _ := json.Marshal(StatusModal(inv, p, ""))
	if bytes.Contains(raw, []byte("<!channel>")) || !bytes.Contains(raw, []byte(`\u0026lt;!channel\u0026gt; \u0026amp; co`)) {
		t.Errorf("status dialog does not escape the name: %s", raw)
	}
	inv.State, inv.Failure = flows.StateFailed, &flows.Failure{Code: flows.FailRejected, Message: "bad <@U1>"}
	if txt := FailureText(inv.Failure); !strings.Contains(txt, "bad &lt;@U1&gt;") {
		t.Errorf("rejected text = %q", txt)
	}
	seen := map[string]flows.FailureCode{}
	for _, c := range []flows.FailureCode{flows.FailForbidden, flows.FailRejected, flows.FailThrottled, flows.FailUnavailable,
		flows.FailNotFound, flows.FailInternalUser, flows.FailCancelled, flows.FailNotify} {
		txt := FailureText(&flows.Failure{Code: c})
		if prev, dup := seen[txt]; dup {
			t.Errorf("%s and %s explain themselves the same way: %q", prev, c, txt)
		}
		seen[txt] = c
	}
	if !strings.Contains(FailureText(&flows.Failure{Code: flows.FailForbidden}), "User.Invite.All") {
		t.Error("403 text does not name User.Invite.All")
	}
	inv.State, inv.Failure = flows.StateInviting, nil
	raw, _ = json.Marshal(StatusModal(inv, p, "30s"))
	if !bytes.Contains(raw, []byte("retrying in 30s")) {
		t.Errorf("retrying dialog: %s", raw)
	}
}

func TestParseSubmission(t *testing.T) {
	// The state of a submitted dialog, as Slack sends it.
	const state = `{"values":{
		"email":{"email":{"type":"plain_text_input","value":"bob@x.com"}},
		"display_name":{"display_name":{"type":"plain_text_input","value":"Bob"}},
		"redirect_url":{"redirect_url":{"type":"plain_text_input","value":"https://x.example"}},
		"delivery":{"delivery":{"type":"radio_buttons","selected_option":{"text":{"type":"plain_text","text":"Microsoft emails the guest"},"value":"microsoft_email"}}},
		"message":{"message":{"type":"plain_text_input","value":"Hello"}},
		"cc":{"cc":{"type":"plain_text_input","value":null}},
		"groups":{"groups":{"type":"multi_static_select","selected_options":[{"value":"g1"},{"value":"g2"}]}},
		"job_title":{"job_title":{"type":"plain_text_input","value":"CTO"}}}}`
	var vs slack.ViewState
	if err := json.Unmarshal([]byte(state), &vs); err != nil {
		t.Fatal(err)
	}
	got := ParseSubmission(&vs)
	want := flows.Request{Email: "bob@x.com", DisplayName: "Bob", RedirectURL: "https://x.example", Delivery: flows.DeliveryMicrosoftEmail,
		Message: "Hello", Groups: []string{"g1", "g2"}, Attributes: flows.Attributes{JobTitle: "CTO"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseSubmission = %+v\nwant %+v", got, want)
	}
	if got := ParseSubmission(nil); fmt.Sprint(got) != fmt.Sprint(flows.Request{}) {
		t.Errorf("nil state = %+v", got)
	}
}

func TestHandlerRejectsUnsignedRequests(t *testing.T) {
	h := New(Config{SigningSecret: "secret"}).Handler()
	sign := func(r *http.Request, body, secret string, at time.Time) {
		ts := strconv.FormatInt(at.Unix(), 10)
		mac := hmac.New(sha256.New, []byte(secret))
		fmt.Fprintf(mac, "v0:%s:%s", ts, body)
		r.Header.Set("X-Slack-Request-Timestamp", ts)
		r.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(mac.Sum(nil)))
	}
	tests := []struct {
		name string
		prep func(*http.Request, string)
		body string
		want int
	}{
		{"Unsigned", func(*http.Request, string) {}, "command=/invite-guest", http.StatusUnauthorized},
		{"WrongSecret", func(r *http.Request, b string) { sign(r, b, "other", time.Now()) }, "command=/invite-guest", http.StatusUnauthorized},
		{"Stale", func(r *http.Request, b string) { sign(r, b, "secret", time.Now().Add(-6*time.Minute)) }, "command=/invite-guest", http.StatusUnauthorized},
		{"TooLarge", func(r *http.Request, b string) { sign(r, b, "secret", time.Now()) }, strings.Repeat("x", MaxBodyBytes+1), http.StatusRequestEntityTooLarge},
		{"URLVerification", func(r *http.Request, b string) { sign(r, b, "secret", time.Now()) }, `{"type":"url_verification","challenge":"c123"}`, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/slack/commands"
			if strings.HasPrefix(tt.body, "{") {
				path = "/slack/events"
			}
			r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(tt.body))
			tt.prep(r, tt.body)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("status = %d, want %d (%s)", w.Code, tt.want, w.Body)
			}
			if tt.want == http.StatusOK && w.Body.String() != "c123" {
				t.Errorf("challenge answer = %q", w.Body)
			}
		})
	}
}

package bot

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// The IDs the fuzzed invitations use. The mentions of them, and the link
// to fuzzRedeemURL, are the only Slack markup the renderers may write.
const (
	fuzzInviter   = "UINVITER"
	fuzzAdmin     = "UADMIN"
	fuzzApprover  = "UAPPROVER"
	fuzzRedeemURL = "https://login.example/redeem?t=1"
)

var knownMarkup = strings.NewReplacer(
	"<@"+fuzzInviter+">", "", "<@"+fuzzAdmin+">", "", "<@"+fuzzApprover+">", "",
	"<"+fuzzRedeemURL+"|Accept the invitation>", "")

// checkNoMarkup fails t if mrkdwn text s holds a control sequence (a
// mention, channel, user group or link) other than the known ones.
func checkNoMarkup(t *testing.T, where, s string) {
	t.Helper()
	if rest := knownMarkup.Replace(s); strings.Contains(rest, "<") {
		i := strings.Index(rest, "<")
		t.Fatalf("%s: live markup from the input at %q in %q", where, rest[i:min(len(rest), i+40)], s[:min(len(s), 300)])
	}
}

// checkJSON checks the text of every mrkdwn text object in v (a view or
// blocks, as Go values or JSON). plain_text objects are not parsed by Slack.
func checkJSON(t *testing.T, where string, v any) {
	t.Helper()
	var tree any
	switch x := v.(type) {
	case string:
		if err := json.Unmarshal([]byte(x), &tree); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		_ = json.Unmarshal(raw, &tree)
	}
	var walk func(n any)
	walk = func(n any) {
		switch x := n.(type) {
		case map[string]any:
			if x["type"] == "mrkdwn" {
				s, _ := x["text"].(string)
				checkNoMarkup(t, where, s)
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(tree)
}

// fuzzPolicy offers one group (with a fuzzed name) that needs approval.
func fuzzPolicy(groupName string) flows.Policy {
	return flows.Policy{
		Admins: []string{fuzzAdmin}, Approvers: []string{fuzzApprover},
		Groups:             []flows.Group{{Name: groupName, ID: "g1", Approvers: []string{fuzzApprover}}},
		DefaultRedirectURL: "https://myapplications.microsoft.com",
	}
}

// fuzzInvitation builds an invitation whose every outside string is s.
type fuzzInput struct {
	name, email, message, justification, graphMsg, reason, objectID string
}

func (in fuzzInput) invitation(state flows.State, delivery flows.Delivery) *flows.Invitation {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return &flows.Invitation{
		ID: "inv_1", Inviter: flows.Inviter{TeamID: "T1", UserID: fuzzInviter}, State: state,
		Request: flows.Request{Email: in.email, DisplayName: in.name, Message: in.message, Justification: in.justification,
			RedirectURL: in.email, Delivery: delivery, UserType: flows.UserTypeGuest, Groups: []string{"g1", in.reason},
			Attributes: flows.Attributes{GivenName: in.name}},
		Matches:     []flows.DirectoryUser{{ID: "u-1", DisplayName: in.name, Mail: in.email, UserPrincipalName: in.email}},
		ObjectID:    in.objectID,
		RedeemURL:   fuzzRedeemURL,
		GroupsAdded: []string{"g1", in.reason},
		Failure:     &flows.Failure{Code: flows.FailRejected, Message: in.graphMsg, Op: in.graphMsg},
		InvitedAt:   now.Add(-time.Hour),
		Tracking:    flows.Tracking{AcceptedAt: now},
		Expiry:      &flows.Expiry{At: now.Add(48 * time.Hour), Period: 90 * 24 * time.Hour},
		Approval: &flows.Approval{Approvers: []string{fuzzApprover}, ExpiresAt: now.Add(time.Hour),
			DecidedBy: fuzzApprover, Reason: in.reason,
			Messages: []flows.ApprovalMessage{{Ref: flows.MessageRef{Channel: "C0APPROVALS", TS: "1.2"}}}},
		CreatedAt: now.Add(-2 * time.Hour), UpdatedAt: now,
	}
}

var fuzzStates = []flows.State{flows.StateRequested, flows.StateAwaitingApproval, flows.StateChecking, flows.StateAwaitingPick,
	flows.StateInviting, flows.StateInvited, flows.StateAttributesSet, flows.StateGroupsAdded, flows.StateProvisioned,
	flows.StateNotified, flows.StateAccepted, flows.StateFailed, flows.StateRevoked, flows.StateRemoved}

var fuzzFailures = []flows.FailureCode{flows.FailForbidden, flows.FailRejected, flows.FailThrottled, flows.FailUnavailable,
	flows.FailNotFound, flows.FailInternalUser, flows.FailCancelled, flows.FailNotify, flows.FailInternal, flows.FailCredential,
	flows.FailDenied, flows.FailApprovalExpired, flows.FailConvertRefused}

func addRenderSeeds(f *testing.F) {
	f.Add("Bob Smith", "bob@fabrikam.com", "Welcome", "Need it", "Bad request", "No", "u-1", "Portal")
	f.Add("<!channel>", "<@U999>@x.com", "<!here> <https://evil.example|click>", "<!everyone>", "<#C123>", "<!subteam^S1>", "<@U1>", "<!channel>")
	f.Add("&lt;!channel&gt;", "a&amp;b@x.com", "&", "<", ">", "&gt;", "`<!here>`", "*<@U1>*")
	f.Add(strings.Repeat("<", 3100), strings.Repeat("&", 300), "<mailto:a@b|a@b>", "<!date^1|x>", "", "", "", "")
}

// FuzzRenderNoLiveMention renders every view and mrkdwn helper that shows
// an invitation, in every state, and checks that no outside text (display
// name, email, message, justification, Graph's message, the approver's
// reason, group names, object ID) forms a mention or link.
func FuzzRenderNoLiveMention(f *testing.F) {
	addRenderSeeds(f)
	f.Fuzz(func(t *testing.T, name, email, message, justification, graphMsg, reason, objectID, groupName string) {
		in := fuzzInput{name, email, message, justification, graphMsg, reason, objectID}
		p := fuzzPolicy(groupName)
		now := time.Date(2025, 3, 2, 12, 0, 0, 0, time.UTC)
		var all []*flows.Invitation
		for _, st := range fuzzStates {
			inv := in.invitation(st, flows.DeliverySlackLink)
			all = append(all, inv)
			checkJSON(t, "StatusModal "+string(st), StatusModal(inv, p, "1s"))
			checkJSON(t, "PickModal", PickModal(inv))
			checkJSON(t, "ConfirmDeleteModal", ConfirmDeleteModal(inv))
			checkNoMarkup(t, "guestName", guestName(inv))
			checkNoMarkup(t, "doneSummary", doneSummary(inv, p))
			checkNoMarkup(t, "progressText", progressText(inv))
			checkJSON(t, "actionButtons", actionButtons(inv, false))
		}
		for _, c := range fuzzFailures {
			checkNoMarkup(t, "FailureText "+string(c), FailureText(&flows.Failure{Code: c, Message: graphMsg, Op: graphMsg}))
		}
		for _, viewer := range []string{fuzzInviter, fuzzAdmin} {
			checkJSON(t, "HomeView", HomeView(all, viewer, viewer == fuzzAdmin, p, now))
		}
		checkJSON(t, "InviteModal", InviteModal(Prefill{Email: email, DisplayName: name}, p, true))
	})
}

// FuzzNotifyNoLiveMention sends every notice about a fuzzed invitation
// through Bot.Notify to the Slack fake and checks each message's text and
// blocks, and each view, for mentions and links formed by outside text.
func FuzzNotifyNoLiveMention(f *testing.F) {
	addRenderSeeds(f)
	tmpl := template.Must(template.New("invitation").Option("missingkey=error").Parse(config.DefaultInvitationTemplate))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, name, email, message, justification, graphMsg, reason, objectID, groupName string) {
		in := fuzzInput{name, email, message, justification, graphMsg, reason, objectID}
		sf := slackfake.New()
		defer sf.Close()
		store := flowstest.NewStore()
		svc := flows.New(flows.Config{Directory: flowstest.NewDirectory(), Store: store, Notifier: &flowstest.Notifier{},
			Policy: fuzzPolicy(groupName), PollInterval: -1, Logger: logger,
			Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
		b := New(Config{Client: slack.New("xoxb-test", slack.OptionAPIURL(sf.APIURL())), Service: svc,
			InvitationTemplate: tmpl, Logger: logger})
		ctx := t.Context()
		if _, err := store.CreateInvitation(ctx, in.invitation(flows.StateNotified, flows.DeliverySlackLink)); err != nil {
			t.Fatal(err)
		}
		type notice struct {
			kind     flows.NoticeKind
			state    flows.State
			action   flows.ActionKind
			decision string
		}
		notices := []notice{
			{kind: flows.NoticeProgress, state: flows.StateInviting},
			{kind: flows.NoticeRetrying, state: flows.StateInviting},
			{kind: flows.NoticeDone, state: flows.StateProvisioned},
			{kind: flows.NoticeDone, state: flows.StateAccepted},
			{kind: flows.NoticeFailed, state: flows.StateFailed},
			{kind: flows.NoticeAccepted, state: flows.StateAccepted},
			{kind: flows.NoticeRemoved, state: flows.StateRemoved},
			{kind: flows.NoticeReminder, state: flows.StateNotified},
			{kind: flows.NoticeExpiring, state: flows.StateAccepted},
			{kind: flows.NoticeActionFailed, state: flows.StateNotified, action: flows.ActionResend},
			{kind: flows.NoticeApprovalRequested, state: flows.StateAwaitingApproval},
			{kind: flows.NoticeApprovalDecided, state: flows.StateRequested, decision: flows.DecisionApproved},
			{kind: flows.NoticeApprovalDecided, state: flows.StateFailed, decision: flows.DecisionDenied},
			{kind: flows.NoticeApprovalDecided, state: flows.StateFailed, decision: flows.DecisionExpired},
		}
		for _, a := range []flows.ActionKind{flows.ActionResend, flows.ActionReset, flows.ActionRevokeGroups, flows.ActionDelete, flows.ActionExpire} {
			notices = append(notices, notice{kind: flows.NoticeActionDone, state: flows.StateRevoked, action: a})
		}
		for _, n := range notices {
			for _, d := range []flows.Delivery{flows.DeliverySlackLink, flows.DeliveryMicrosoftEmail} {
				inv := in.invitation(n.state, d)
				inv.DM = flows.MessageRef{Channel: "DINVITER", TS: "1.1"}
				if n.decision != "" {
					inv.Approval.Decision = n.decision
				} else if n.kind != flows.NoticeApprovalRequested {
					inv.Approval = nil
				}
				to := "C0APPROVALS"
				if d == flows.DeliveryMicrosoftEmail {
					to = fuzzApprover
				}
				_, _ = b.Notify(ctx, flows.Notice{Kind: n.kind, Invitation: inv, RetryIn: time.Second, Action: n.action,
					By: fuzzAdmin, Failure: inv.Failure, To: to})
			}
		}
		if blocks, fallback := b.approvalRequest(in.invitation(flows.StateAwaitingApproval, flows.DeliverySlackLink)); true {
			checkNoMarkup(t, "approval fallback", fallback)
			checkJSON(t, "approval request", blocks)
		}
		for _, c := range sf.Calls("") {
			where := c.Method
			if s := c.Form.Get("text"); s != "" {
				checkNoMarkup(t, where+" text", s)
			}
			if s := c.Form.Get("blocks"); s != "" {
				checkJSON(t, where+" blocks", s)
			}
			if s := c.Form.Get("view"); s != "" {
				checkJSON(t, where+" view", s)
			}
			if c.JSON != nil {
				checkJSON(t, where, c.JSON)
			}
		}
	})
}

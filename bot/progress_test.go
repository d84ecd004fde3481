package bot

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// notifyEnv is a Bot on the Slack fake (through the pacer) with a
// Service on in-memory fakes.
type notifyEnv struct {
	bot   *Bot
	slack *slackfake.Server
	store *flowstest.Store
}

func newNotifyEnv(t *testing.T) *notifyEnv {
	t.Helper()
	e := &notifyEnv{slack: slackfake.New(), store: flowstest.NewStore()}
	t.Cleanup(e.slack.Close)
	e.slack.EnforceLimits(true)
	svc := flows.New(flows.Config{Directory: flowstest.NewDirectory(), Store: e.store, Notifier: &flowstest.Notifier{},
		Policy: flows.Policy{DefaultRedirectURL: "https://myapplications.microsoft.com"}, PollInterval: -1})
	api := slack.New("xoxb-test", slack.OptionAPIURL(e.slack.APIURL()),
		slack.OptionHTTPClient(&http.Client{Transport: NewPacer(nil, e.slack.APIURL(), nil)}))
	e.bot = New(Config{Client: api, Service: svc, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		InvitationTemplate: template.Must(template.New("invitation").Parse("{{.InviterName}} invites {{.GuestName}}: {{.RedeemURL}}"))})
	t.Cleanup(e.bot.Close)
	return e
}

// dialog opens inv's status dialog in the fake, as Slack holds it after
// the submission's answer.
func (e *notifyEnv) dialog(t *testing.T, inv *flows.Invitation) {
	t.Helper()
	raw, err := json.Marshal(StatusModal(inv, e.bot.svc.Policy(), ""))
	if err != nil {
		t.Fatal(err)
	}
	e.slack.SetView("V"+inv.ID, raw)
}

func running(id string, st flows.State) *flows.Invitation {
	return &flows.Invitation{ID: id, Origin: flows.Origin{Kind: flows.OriginDialog, Key: "V" + id}, State: st, Inviter: flows.Inviter{UserID: "U0ANN"},
		Request: flows.Request{Email: "bob@fabrikam.com", Delivery: flows.DeliverySlackLink, RedirectURL: "https://myapplications.microsoft.com"}}
}

// An invitation whose steps finish within a second shows no intermediate
// state: its dialog gets one views.update, the final one, after the DM.
func TestProgressQuickStepsShowNothing(t *testing.T) {
	e := newNotifyEnv(t)
	inv := running("inv_1", flows.StateChecking)
	e.dialog(t, inv)
	for _, st := range []flows.State{flows.StateChecking, flows.StateInviting, flows.StateInvited, flows.StateProvisioned} {
		inv.State = st
		if _, err := e.bot.Notify(t.Context(), flows.Notice{Kind: flows.NoticeProgress, Invitation: inv.Clone()}); err != nil {
			t.Fatal(err)
		}
	}
	inv.RedeemURL = "https://login.microsoftonline.com/redeem?x"
	if _, err := e.bot.Notify(t.Context(), flows.Notice{Kind: flows.NoticeDone, Invitation: inv.Clone()}); err != nil {
		t.Fatal(err)
	}
	if err := e.slack.WaitFor(t.Context(), func() bool { return len(e.slack.Calls("users.lookupByEmail")) == 1 }); err != nil {
		t.Fatal(err)
	}
	e.bot.Close() // no pending progress survives
	var methods []string
	for _, c := range e.slack.Calls("") {
		methods = append(methods, c.Method)
	}
	// The inviter's name for the text, the DM to the user ID; then the
	// final dialog and, in the background, the Slack Connect check.
	if len(methods) != 4 || strings.Join(methods[:2], " ") != "users.info chat.postMessage" ||
		!slices.Contains(methods[2:], "views.update") || !slices.Contains(methods[2:], "users.lookupByEmail") {
		t.Errorf("calls = %q, want users.info, chat.postMessage, then views.update and users.lookupByEmail", methods)
	}
	if v, _ := e.slack.View("Vinv_1"); !strings.Contains(string(v), ":white_check_mark:") {
		t.Errorf("dialog does not show the outcome:\n%s", v)
	}
}

// A step that lasts shows in the dialog once it has lasted progressEvery;
// a step that finishes sooner does not show; two intermediate states are
// at least progressEvery apart; the final state is the last update.
func TestProgressShowsSlowStepsOnly(t *testing.T) {
	e := newNotifyEnv(t)
	const every = 200 * time.Millisecond
	e.bot.progressEvery = every
	inv := running("inv_2", flows.StateChecking)
	e.dialog(t, inv)
	notify := func(kind flows.NoticeKind, st flows.State) time.Time {
		t.Helper()
		inv.State = st
		at := time.Now()
		if _, err := e.bot.Notify(t.Context(), flows.Notice{Kind: kind, Invitation: inv.Clone()}); err != nil {
			t.Fatal(err)
		}
		return at
	}
	updates := func(n int) []slackfake.Call {
		t.Helper()
		if err := e.slack.WaitFor(t.Context(), func() bool { return len(e.slack.Calls("views.update")) >= n }); err != nil {
			t.Fatal(err)
		}
		return e.slack.Calls("views.update")
	}
	began := notify(flows.NoticeProgress, flows.StateChecking) // a slow step
	u := updates(1)
	if d := u[0].At.Sub(began); d < every || !strings.Contains(fmt.Sprint(u[0].JSON), "Checking the directory") {
		t.Errorf("first update %v after the step began, want at least %v, showing it: %v", d, every, u[0].JSON)
	}
	notify(flows.NoticeProgress, flows.StateInviting) // quick
	notify(flows.NoticeProgress, flows.StateInvited)  // slow
	u = updates(2)
	if gap := u[1].At.Sub(u[0].At); gap < every || !strings.Contains(fmt.Sprint(u[1].JSON), "Writing the guest") {
		t.Errorf("second update %v after the first, want at least %v, showing the slow step: %v", gap, every, u[1].JSON)
	}
	notify(flows.NoticeProgress, flows.StateAttributesSet) // quick: the invitation fails at once
	inv.Failure = &flows.Failure{Code: flows.FailInternal}
	notify(flows.NoticeFailed, flows.StateFailed)
	e.bot.Close()
	u = e.slack.Calls("views.update")
	if len(u) != 3 || !strings.Contains(fmt.Sprint(u[2].JSON), "Could not invite") {
		t.Errorf("%d views.update; want the two slow steps and the final state, last: %v", len(u), u[len(u)-1].JSON)
	}
}

// A retry after a wait of at least progressEvery is known to be slow: the
// dialog says so before the wait begins (when the last update is far
// enough back); a short retry is a quick step like any other.
func TestProgressShowsALongRetryAtOnce(t *testing.T) {
	e := newNotifyEnv(t)
	inv := running("inv_3", flows.StateInviting)
	e.dialog(t, inv)
	retry := func(in time.Duration) {
		t.Helper()
		if _, err := e.bot.Notify(t.Context(), flows.Notice{Kind: flows.NoticeRetrying, Invitation: inv.Clone(), RetryIn: in}); err != nil {
			t.Fatal(err)
		}
	}
	retry(100 * time.Millisecond)
	retry(30 * time.Second)
	u := e.slack.Calls("views.update")
	if len(u) != 1 || !strings.Contains(fmt.Sprint(u[0].JSON), "retrying in 30s") {
		t.Fatalf("views.update when Notify returned: %d %v, want one saying retrying in 30s", len(u), u)
	}
}

// A person's profile is read once (users.info) for their name and email;
// a user_change event drops it.
func TestProfileCachedUntilUserChange(t *testing.T) {
	e := newNotifyEnv(t)
	e.slack.AddUser("U0ANN", "ann@contoso.com", "Ann Inviter")
	for range 3 {
		if got, err := e.bot.Email(t.Context(), "U0ANN"); err != nil || got != "ann@contoso.com" {
			t.Fatalf("Email = %q, %v", got, err)
		}
	}
	if n := len(e.slack.Calls("users.info")); n != 1 {
		t.Errorf("users.info %d times, want 1", n)
	}
	_ = e.bot.event(t.Context(), json.RawMessage(`{"type":"event_callback","event":{"type":"user_change","user":{"id":"U0ANN","profile":{"email":"ann@contoso.com"}}}}`))
	if _, err := e.bot.Email(t.Context(), "U0ANN"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.slack.Calls("users.info")); n != 2 {
		t.Errorf("users.info %d times after user_change, want 2", n)
	}
}

// The Home tab is published when opened; changes re-publish it at most
// once per homeEvery, and not at all for a tab never opened.
func TestHomeRepublishedAtMostOncePerInterval(t *testing.T) {
	e := newNotifyEnv(t)
	const every = 300 * time.Millisecond
	e.bot.homeEvery = every
	publishes := func() []slackfake.Call { return e.slack.Calls("views.publish") }
	e.bot.homeChanged("U0ANN")
	_ = e.bot.event(t.Context(), json.RawMessage(`{"type":"event_callback","event":{"type":"app_home_opened","user":"U0ANN","tab":"home"}}`))
	if err := e.slack.WaitFor(t.Context(), func() bool { return len(publishes()) == 1 }); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		e.bot.homeChanged("U0ANN")
		e.bot.homeChanged("U0BOB") // never opened
	}
	if err := e.slack.WaitFor(t.Context(), func() bool { return len(publishes()) == 2 }); err != nil {
		t.Fatal(err)
	}
	e.bot.Close()
	p := publishes()
	if len(p) != 2 {
		t.Fatalf("%d publishes, want 2 (opened, then one for five changes)", len(p))
	}
	// The interval runs from when the first publish began, before Slack
	// saw it: half of it is a bound no immediate re-publish meets.
	if gap := p[1].At.Sub(p[0].At); gap < every/2 {
		t.Errorf("re-published %v after the last, want about %v", gap, every)
	}
	for _, c := range p {
		if u, _ := c.JSON["user_id"].(string); u != "U0ANN" {
			t.Errorf("published the Home tab of %q", u)
		}
	}
}

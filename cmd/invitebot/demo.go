//go:build !noemulators

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/slackfake"
)

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "show invitebot's log")
	socket := fs.Bool("socket", false, "play Slack over Socket Mode (SLACK_APP_TOKEN) instead of HTTP")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: invitebot demo [-v] [-socket]

Runs the whole invitation flow against built-in emulators: an in-memory
Entra tenant behind Microsoft Graph's API and a TLS token service (the real
azidentity and msgraph-sdk-go code runs), and a Slack Web API fake. The demo
plays Slack: it sends signed /invite-guest commands and dialog submissions
to invitebot's HTTP endpoints (or, with -socket, delivers them over a Socket
Mode WebSocket), runs a Workflow Builder step, and prints what the inviter
would see, as Slack shows it. Its last step runs with
INVITEBOT_INVITE_AS=inviter: the inviter connects their Microsoft account
(the demo plays the browser) and the invitation is sent as them. With -v it
also prints invitebot's log (to standard error).
`)
		fs.PrintDefaults()
	}
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	// `demo | head`: a write to the closed pipe fails (EPIPE) instead of
	// killing the process, so the demo stops and removes its directory.
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	defer signal.Stop(pipe)
	out := &stickyWriter{w: stdout}
	dir, err := os.MkdirTemp("", "invitebot-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logw := io.Discard
	if *verbose {
		logw = stderr
	}
	tr := overHTTP
	if *socket {
		tr = overSocket
	}
	// A quick tracker, so Bob's acceptance shows within the demo.
	const poll = 250 * time.Millisecond
	e, err := startEmulated(filepath.Join(dir, "invitebot.db"), slog.New(slog.NewTextHandler(logw, nil)), deps{pollInterval: poll}, tr)
	if err != nil {
		return err
	}
	defer func() {
		if e != nil {
			e.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	e.tenant.AddUser(graphfake.User{DisplayName: "Alice Partner", Mail: "alice@partner.example", UserType: "Guest",
		ExternalUserState: "Accepted", OtherMails: []string{"alice@partner.example"}})
	e.slack.AddUser("U0BOB", "bob@fabrikam.com", "Bob Smith (Fabrikam)")

	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }
	indent := func(s string) string { // as Slack shows it, indented
		return "    " + strings.ReplaceAll(strings.TrimRight(readable(s), "\n"), "\n", "\n    ")
	}
	over := "signed HTTP requests, as Slack sends them to a public URL"
	if *socket {
		over = "a Socket Mode WebSocket, as Slack delivers to an app with an app-level token"
	}
	say("Ann works at Contoso and uses invitebot in Contoso's Slack; Bob Smith works at Fabrikam, a partner she invites into Contoso's Entra tenant as a guest.")
	say("Everything runs against built-in emulators of Slack and of Microsoft Entra and Graph (nothing leaves this machine); Slack is played over %s.\n", over)
	const inviter = "U0ANN"
	waitDM := func(n int) error {
		return e.slack.WaitFor(ctx, func() bool { return len(e.dmsTo(inviter)) >= n })
	}

	say("1. Ann runs: /invite-guest bob@fabrikam.com Bob Smith")
	_, view, err := e.player.Command(ctx, inviter, bot.Command, "bob@fabrikam.com Bob Smith")
	if err != nil || view == "" {
		return fmt.Errorf("the dialog did not open: %v", err)
	}
	say("   A dialog opens, pre-filled; she adds the group \"Partner portal users\" and submits.")
	r, err := e.player.Submit(ctx, inviter, view, inviteValues("bob@fabrikam.com", "Bob Smith", "slack_link", emuPortal))
	if err == nil {
		err = ok(r)
	}
	if err != nil {
		return err
	}
	if err := waitDM(1); err != nil {
		return fmt.Errorf("no DM: %w", err)
	}
	say("   The dialog now says:\n%s", indent(e.viewText(view)))
	say("   invitebot DMs her:\n%s\n", indent(render(e.dmsTo(inviter)[0].Blocks)))

	say("2. Ann invites alice@partner.example, who already has an account.")
	_, view, err = e.player.Command(ctx, inviter, bot.Command, "")
	if err != nil || view == "" {
		return fmt.Errorf("the dialog did not open: %v", err)
	}
	if _, err = e.player.Submit(ctx, inviter, view, inviteValues("alice@partner.example", "Alice", "slack_link", emuPortal)); err != nil {
		return err
	}
	if err := e.slack.WaitFor(ctx, func() bool { return e.viewCallback(view) == bot.CallbackPick }); err != nil {
		return fmt.Errorf("no pick dialog: %w", err)
	}
	say("   The dialog shows the match:\n%s", indent(e.viewText(view)))
	users := e.tenant.Users()
	say("   She picks Alice's existing account.")
	if out.err != nil {
		return out.err
	}
	pick := map[string]map[string]any{"pick": {"pick": map[string]any{"type": "radio_buttons", "selected_option": map[string]any{"value": users[0].ID}}}}
	if _, err = e.player.Submit(ctx, inviter, view, pick); err != nil {
		return err
	}
	if err := waitDM(2); err != nil {
		return fmt.Errorf("no DM: %w", err)
	}
	say("   invitebot DMs her:\n%s\n", indent(render(e.dmsTo(inviter)[1].Blocks)))

	say("3. Ann tries carol@contoso.com (the company's own domain) with an http:// landing page.")
	_, view, _ = e.player.Command(ctx, inviter, bot.Command, "")
	v := inviteValues("carol@contoso.com", "Carol", "slack_link")
	v["redirect_url"]["redirect_url"] = map[string]any{"type": "plain_text_input", "value": "http://intranet"}
	if r, err = e.player.Submit(ctx, inviter, view, v); err != nil {
		return err
	}
	say("   The dialog answers next to the fields (nothing is sent to Microsoft):")
	if errs, _ := r.JSON()["errors"].(map[string]any); errs != nil {
		for _, k := range []string{"email", "redirect_url"} {
			say("    %s: %v", k, errs[k])
		}
	}
	if out.err != nil {
		return out.err
	}
	say("\n4. Bob opens the link and accepts (the tenant marks him Accepted).")
	var bobID string
	for _, inv := range e.tenant.Invitations() {
		if inv.Body["invitedUserEmailAddress"] == "bob@fabrikam.com" {
			bobID = inv.UserID
		}
	}
	e.tenant.Redeem(bobID)
	if err := waitDM(3); err != nil {
		return fmt.Errorf("no acceptance DM: %w", err)
	}
	say("   Within one poll interval (INVITEBOT_POLL_INTERVAL; %s in the demo) invitebot DMs Ann:\n%s", poll, indent(render(e.dmsTo(inviter)[2].Blocks)))
	if err := e.slack.WaitFor(ctx, func() bool {
		m, ok := e.slack.Message(e.dmsTo(inviter)[0].Channel, e.dmsTo(inviter)[0].TS)
		// Edited once already if Bob is in Slack (the button that sends
		// him the invitation is added after the DM): wait for the acceptance.
		return ok && m.Edited > 0 && strings.Contains(string(m.Blocks), "Accepted")
	}); err != nil {
		return fmt.Errorf("the first DM was not updated: %w", err)
	}
	first, _ := e.slack.Message(e.dmsTo(inviter)[0].Channel, e.dmsTo(inviter)[0].TS)
	say("   and updates her first DM (the used link is gone):\n%s\n", indent(render(first.Blocks)))

	if out.err != nil {
		return out.err
	}
	say("5. Ann opens invitebot's Home tab:")
	published := len(e.slack.Calls("views.publish"))
	if _, err := e.player.OpenHome(ctx, inviter); err != nil {
		return err
	}
	if err := e.slack.WaitFor(ctx, func() bool { return len(e.slack.Calls("views.publish")) > published }); err != nil {
		return fmt.Errorf("no Home tab: %w", err)
	}
	home, _ := e.slack.HomeView(inviter)
	say("%s", indent(renderView(home)))

	const csvFile = "email,display name,send microsoft email,groups\n" +
		"dan@northwind.example,Dan Ek,true,Partner portal users\n" +
		"erin@northwind.example,Erin Wu,true,Partner portal users\n" +
		"frank@contoso.com,Frank,true,\n"
	say("\n6. Ann sends invitebot a CSV file in her DM with it, to invite a team at once:\n%s", indent(csvFile))
	shared := e.slack.ShareFile(inviter, slackfake.DMChannel(inviter), "northwind.csv", []byte(csvFile))
	if _, err := e.player.FileShared(ctx, inviter, slackfake.DMChannel(inviter), shared); err != nil {
		return err
	}
	var results slackfake.File
	if err := e.slack.WaitFor(ctx, func() bool {
		for _, f := range e.slack.Files() {
			if f.Name == "northwind.results.csv" {
				results = f
				return true
			}
		}
		return false
	}); err != nil {
		return fmt.Errorf("no bulk results: %w", err)
	}
	for _, m := range e.slack.Messages() {
		if strings.HasPrefix(m.Text, "Inviting from northwind.csv") {
			say("   A message in the DM counts the rows as they finish, and ends:\n%s", indent(m.Text))
		}
	}
	say("   and invitebot posts %s:\n%s", results.Name, indent(string(results.Content)))

	say("\n7. A workflow built in Workflow Builder (a request form, then invitebot's step \"Invite an external guest\")")
	say("   runs for Ann, asking for gina@fabrikam.com in \"Partner portal users\".")
	x, _, err := e.player.FunctionExecuted(ctx, bot.FunctionInvite, map[string]any{
		bot.StepRequester: slackfake.UserContext(inviter), bot.StepEmail: "gina@fabrikam.com", bot.StepDisplayName: "Gina Ortiz",
		bot.StepGroups: "Partner portal users", bot.StepDelivery: "slack_link"})
	if err != nil {
		return err
	}
	if err := e.slack.WaitFor(ctx, func() bool { return len(e.slack.Completions(x.ID)) > 0 }); err != nil {
		return fmt.Errorf("the workflow step was not completed: %w", err)
	}
	c := e.slack.Completions(x.ID)[0]
	say("   invitebot applies the policy to Ann (the step's requester), invites Gina, DMs Ann the redeem link")
	say("   and completes the step (functions.completeSuccess) with outputs for the workflow's next steps:")
	for _, k := range bot.StepOutputs {
		say("    %s: %v", k, c.Outputs[k])
	}

	mode := "HTTP"
	if *socket {
		mode = "Socket Mode"
	}
	say("\nThe tenant now has %d users; \"Partner portal users\" has %d members. Invitations sent: %d. Slack was played over %s.",
		len(e.tenant.Users()), len(e.tenant.GroupMembers(emuPortal)), len(e.tenant.Invitations()), mode)
	// One Graph client at work per process (building one writes a kiota
	// global that the other's decoding reads).
	if err := e.Close(); err != nil {
		return err
	}
	e = nil
	if err := demoInviteAsInviter(ctx, filepath.Join(dir, "inviter.db"), slog.New(slog.NewTextHandler(logw, nil)), tr, say, indent); err != nil {
		return err
	}
	return out.err
}

// demoInviteAsInviter shows INVITEBOT_INVITE_AS=inviter on fresh
// emulators: the connect step (the demo plays the browser) and an
// invitation sent as the person.
func demoInviteAsInviter(ctx context.Context, db string, log *slog.Logger, tr transport, say func(string, ...any), indent func(string) string) error {
	e, err := startEmulated(db, log, deps{pollInterval: -1, env: map[string]string{"INVITEBOT_INVITE_AS": "inviter"}}, tr)
	if err != nil {
		return err
	}
	defer e.Close()
	const inviter = "U0ANN"
	e.slack.AddUser(inviter, "ann@contoso.com", "Ann Lee")
	annEntra := e.tenant.AddUser(graphfake.User{DisplayName: "Ann Lee", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com", UserType: "Member"})
	say("\n8. The admin sets INVITEBOT_INVITE_AS=inviter: invitations are now sent as the person who asks.")
	say("   Ann invites grace@tailspin.example; she has not connected her Microsoft account yet.")
	_, view, err := e.player.Command(ctx, inviter, bot.Command, "grace@tailspin.example Grace Hall")
	if err != nil || view == "" {
		return fmt.Errorf("the dialog did not open: %v", err)
	}
	if _, err := e.player.Submit(ctx, inviter, view, inviteValues("grace@tailspin.example", "Grace Hall", "slack_link")); err != nil {
		return err
	}
	if err := e.slack.WaitFor(ctx, func() bool { return len(e.dmsTo(inviter)) >= 1 }); err != nil {
		return fmt.Errorf("no connect DM: %w", err)
	}
	dm := e.dmsTo(inviter)[0]
	say("   invitebot DMs her (the invitation waits in awaiting_sign_in):\n%s", indent(render(dm.Blocks)))
	var link string
	var blocks []struct {
		Elements []struct {
			URL string `json:"url"`
		} `json:"elements"`
	}
	_ = json.Unmarshal(dm.Blocks, &blocks)
	for _, b := range blocks {
		for _, el := range b.Elements {
			link = cmp.Or(link, el.URL)
		}
	}
	if link == "" {
		return errors.New("the DM has no connect link")
	}
	say("   She clicks the button and signs in with Microsoft (the demo plays her browser):")
	e.sts.SignIn(graphfake.SignedInUser{ObjectID: annEntra.ID, Username: "ann@contoso.com", Name: "Ann Lee"})
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Transport: e.sts.Client().Transport}
	resp, err := browser.Get(link)
	if err != nil {
		return err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := regexp.MustCompile(`<p>(.*)</p>`).FindSubmatch(page)
	if resp.StatusCode != http.StatusOK || text == nil {
		return fmt.Errorf("sign-in page %d: %s", resp.StatusCode, page)
	}
	say("   GET /auth/start → Microsoft's authorize page → GET /auth/callback shows:\n%s", indent(html.UnescapeString(string(text[1]))))
	if err := e.slack.WaitFor(ctx, func() bool { return len(e.dmsTo(inviter)) >= 3 }); err != nil {
		return fmt.Errorf("no DMs after connecting: %w", err)
	}
	e.app.svc.Wait()
	say("   invitebot DMs her:\n%s", indent(e.dmsTo(inviter)[1].Text))
	say("   and the waiting invitation went on by itself:\n%s", indent(render(e.dmsTo(inviter)[2].Blocks)))
	for _, inv := range e.tenant.Invitations() {
		sender := "the app"
		if inv.InvitedBy == annEntra.ID {
			sender = "Ann (object ID " + inv.InvitedBy + ")"
		}
		say("   Entra records the invitation of %v as sent by %s.", inv.Body["invitedUserEmailAddress"], sender)
	}
	return nil
}

// stickyWriter keeps the first write error (a closed pipe) and writes
// nothing after it.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.w.Write(p)
	if err != nil {
		s.err = fmt.Errorf("demo output: %w", err)
	}
	return n, err
}

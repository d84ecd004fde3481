package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		var out, errb bytes.Buffer
		if err := run(t.Context(), args, func(string) string { return "" }, &out, &errb); err != nil {
			t.Errorf("%v: %v", args, err)
		}
		for _, want := range []string{"serve", "demo", "/invite-guest"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: help lacks %q", args, want)
			}
		}
	}
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"serve", "-h"}, func(string) string { return "" }, &out, &errb)
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(errb.String(), "SLACK_BOT_TOKEN") || !strings.Contains(errb.String(), "INVITEBOT_POLL_INTERVAL") {
		t.Errorf("serve -h: %v\n%s", err, errb.String())
	}
	if err := run(t.Context(), []string{"demo", "-h"}, nil, &out, &errb); !errors.Is(err, flag.ErrHelp) || !strings.Contains(errb.String(), "emulators") {
		t.Errorf("demo -h: %v", err)
	}
}

// Ensure -h and --help show every command's usage and exit 0, and that
// the commands without arguments refuse one.
func TestCommandHelpAndArguments(t *testing.T) {
	for _, cmd := range [][]string{{"serve"}, {"demo"}, {"load"}, {"policy"}, {"doctor"}, {"audit"}, {"audit", "export"}, {"bulk"}, {"version"}, {"backup"}} {
		for _, h := range []string{"-h", "--help"} {
			var out, errb bytes.Buffer
			err := run(t.Context(), append(cmd, h), func(string) string { return "" }, &out, &errb)
			if code := exitCode(err, &errb); code != 0 || !strings.Contains(errb.String()+out.String(), "Usage") {
				t.Errorf("%v %s: exit %d (%v), output:\n%s%s", cmd, h, code, err, out.String(), errb.String())
			}
		}
	}
	for _, cmd := range []string{"serve", "demo", "load", "doctor", "version"} {
		var out, errb bytes.Buffer
		err := run(t.Context(), []string{cmd, "extra"}, func(string) string { return "" }, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), cmd+" takes no arguments") {
			t.Errorf("%s extra: %v", cmd, err)
		}
	}
	var out, errb bytes.Buffer
	if code := exitCode(errors.New("boom"), &errb); code != 1 || errb.String() != "invitebot: boom\n" {
		t.Errorf("exitCode(boom) = %d, printed %q", code, errb.String())
	}
	_ = run(t.Context(), []string{"bulk", "-h"}, nil, &out, &errb)
	if !strings.Contains(errb.String(), "-as user") || !strings.Contains(errb.String(), "user ID (U…) or their Slack email") {
		t.Errorf("bulk -h:\n%s", errb.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"frobnicate"}, nil, &out, &errb); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Errorf("err = %v", err)
	}
	if err := run(t.Context(), nil, nil, &out, &errb); err == nil {
		t.Error("no command: no error")
	}
}

// Ensure a missing variable stops start-up with an error naming it.
func TestServeMissingEnv(t *testing.T) {
	env := map[string]string{
		"SLACK_SIGNING_SECRET": "x",
		"AZURE_TENANT_ID":      "t",
		"AZURE_CLIENT_ID":      "22222222-2222-2222-2222-222222222222",
		"AZURE_CLIENT_SECRET":  "s",
	}
	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"serve"}, func(k string) string { return env[k] }, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "SLACK_BOT_TOKEN: required") {
		t.Fatalf("err = %v, want it to name SLACK_BOT_TOKEN", err)
	}
	if strings.Contains(err.Error(), "AZURE_TENANT_ID") {
		t.Errorf("err names a variable that is set: %v", err)
	}
}

// Ensure the demo runs the whole flow and prints what the inviter sees as
// Slack shows it (emoji, no mrkdwn marks, the link once and shortened),
// without the redeem link's ticket.
func TestDemo(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"demo"}, nil, &out, &errb); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errb.String())
	}
	text := out.String()
	for _, want := range []string{"Ann works at Contoso", "built-in emulators", "✅ Bob Smith is invited as a guest", "Accept the invitation",
		"Alice Partner already had an account", "internal user", "must start with https://", "🎉 Bob Smith (bob@fabrikam.com) accepted your invitation",
		"Accepted 2", "Your invitations", "Invitations sent: 4", "functions.completeSuccess", "outcome: invited", "3 of 3 rows done", "Done: 2 invited, 1 rejected.",
		"row,email,object_id,outcome,reason", "dan@northwind.example,", "https://login.microsoftonline.com/redeem?…", "Slack was played over HTTP.",
		"Connect your Microsoft account", "Connected as Ann Lee (ann@contoso.com). You can close this tab.",
		"grace@tailspin.example as sent by Ann (object ID"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	for _, raw := range []string{":white_check_mark:", ":tada:", "*", "```", "<https://", "ticket", "%3D"} {
		if strings.Contains(text, raw) {
			t.Errorf("demo output shows Slack markup or a link's query %q:\n%s", raw, text)
		}
	}
	// Each DM with a link shows it once: as the button's text, and its
	// address only in the text to forward.
	if n, dms := strings.Count(text, "https://login.microsoftonline.com/redeem"), strings.Count(text, "Ready to forward:"); n != dms || n == 0 {
		t.Errorf("the redeem link is shown %d times in %d DMs with a link, want once each:\n%s", n, dms, text)
	}
}

// Ensure `demo -socket` says it played Slack over Socket Mode.
func TestDemoSocket(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"demo", "-socket"}, nil, &out, &errb); err != nil {
		t.Fatalf("demo -socket: %v\n%s\n%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "Slack is played over a Socket Mode WebSocket") || !strings.Contains(out.String(), "Slack was played over Socket Mode.") {
		t.Errorf("demo -socket does not say it ran over Socket Mode:\n%s", out.String())
	}
}

// Ensure `invitebot demo | head` leaves no temporary directory behind: the
// demo runs in a child process whose standard output is a pipe closed
// after the first line, as head closes it.
func TestDemoClosedPipe(t *testing.T) {
	if os.Getenv("INVITEBOT_DEMO_CHILD") == "1" {
		err := run(context.Background(), []string{"demo"}, nil, os.Stdout, os.Stderr)
		fmt.Fprintln(os.Stderr, "demo returned:", err)
		os.Exit(exitCode(err, io.Discard))
	}
	tmp := t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestDemoClosedPipe$")
	cmd.Env = append(os.Environ(), "INVITEBOT_DEMO_CHILD=1", "TMPDIR="+tmp)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "Ann works at Contoso") {
		t.Fatalf("first line %q: %v", first, err)
	}
	_ = stdout.Close() // as head does after its lines
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) && !ee.Exited() {
		t.Fatalf("the demo was killed (%v), not stopped by the failed write:\n%s", err, errb.String())
	}
	if !strings.Contains(errb.String(), "broken pipe") {
		t.Errorf("the demo did not stop on the closed pipe (%v):\n%s", err, errb.String())
	}
	left, _ := os.ReadDir(tmp)
	for _, e := range left {
		if strings.HasPrefix(e.Name(), "invitebot-demo-") {
			t.Errorf("the demo left %s behind", filepath.Join(tmp, e.Name()))
		}
	}
}

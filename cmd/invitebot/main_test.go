package main

import (
	"bytes"
	"errors"
	"flag"
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

// Ensure the demo runs the whole flow and prints what the inviter sees,
// without the redeem link's ticket.
func TestDemo(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(t.Context(), []string{"demo"}, nil, &out, &errb); err != nil {
		t.Fatalf("demo: %v\n%s\n%s", err, out.String(), errb.String())
	}
	for _, want := range []string{"is invited as a guest", "Accept the invitation", "already had an account",
		"internal user", "must start with https://", "accepted your invitation", "*Accepted*", "Your invitations",
		"Accepted 2", "Invitations sent: 4", "functions.completeSuccess", "outcome: invited", "3 of 3 rows done", "Done: 2 invited, 1 rejected.",
		"row,email,object_id,outcome,reason", "dan@northwind.example,",
		"Connect your Microsoft account", "Connected as Ann Lee (ann@contoso.com). You can close this tab.",
		"grace@tailspin.example as sent by Ann (object ID"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(strings.ToLower(out.String()), "ticket%3d") {
		t.Errorf("demo printed a redeem ticket:\n%s", out.String())
	}
}

package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/store"
)

// auditStore writes a store whose audit log holds one event from 40 days
// ago and one from an hour ago, and returns its path.
func auditStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "invitebot.db")
	db, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	inv := &flows.Invitation{ID: "inv_1", State: flows.StateNotified, Request: flows.Request{Email: "bob@fabrikam.com"},
		RedeemURL: "https://login.microsoftonline.com/redeem?rd=secret",
		History: []flows.Event{
			{At: now.Add(-40 * 24 * time.Hour), InvitationID: "inv_1", Actor: "U0ANN", Action: "requested", Detail: "bob@fabrikam.com"},
			{At: now.Add(-time.Hour), InvitationID: "inv_1", ObjectID: "u-1", Actor: flows.ActorBot, Action: "invited", Detail: "@evil"},
		}}
	if _, err := db.CreateInvitation(t.Context(), inv); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// onlyDB is an environment with nothing but INVITEBOT_DB: the export needs
// no Slack or Azure configuration.
func onlyDB(path string) func(string) string {
	return func(k string) string {
		if k == "INVITEBOT_DB" {
			return path
		}
		return ""
	}
}

func auditRows(t *testing.T, b []byte) [][]string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) == 0 || strings.Join(rows[0], ",") != "time,invitation_id,object_id,actor,action,detail" {
		t.Fatalf("not the audit CSV (%v):\n%s", err, b)
	}
	return rows[1:]
}

func TestAuditExport(t *testing.T) {
	path := auditStore(t)

	t.Run("Stdout", func(t *testing.T) {
		var out, errb bytes.Buffer
		if err := run(t.Context(), []string{"audit", "export"}, onlyDB(path), &out, &errb); err != nil {
			t.Fatalf("%v\n%s", err, errb.String())
		}
		rows := auditRows(t, out.Bytes())
		if len(rows) != 1 || rows[0][1] != "inv_1" || rows[0][2] != "u-1" || rows[0][4] != "invited" || rows[0][5] != "'@evil" {
			t.Errorf("rows = %q, want the last 30 days' event, defused", rows)
		}
		if strings.Contains(out.String(), "redeem") {
			t.Errorf("the export contains the redeem link:\n%s", out.String())
		}
		if !strings.Contains(errb.String(), "wrote 1 audit events") {
			t.Errorf("stderr = %q", errb.String())
		}
	})

	t.Run("SinceAndFile", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "audit.csv")
		var out, errb bytes.Buffer
		if err := run(t.Context(), []string{"audit", "export", "-since", "1000h", "-o", file}, onlyDB(path), &out, &errb); err != nil {
			t.Fatalf("%v\n%s", err, errb.String())
		}
		if out.Len() != 0 {
			t.Errorf("stdout = %q, want nothing", out.String())
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if rows := auditRows(t, b); len(rows) != 2 || rows[0][4] != "requested" || rows[1][4] != "invited" {
			t.Errorf("rows = %q, want both events, oldest first", rows)
		}
		if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("file mode = %v, %v; want 0600", st.Mode(), err)
		}
	})

	t.Run("StoreInUse", func(t *testing.T) {
		db, err := store.Open(path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var out, errb bytes.Buffer
		err = run(t.Context(), []string{"audit", "export"}, onlyDB(path), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), "the store is in use by a running invitebot; stop it, or use /invite-guest audit") {
			t.Errorf("err = %v", err)
		}
		if out.Len() != 0 {
			t.Errorf("stdout = %q", out.String())
		}
	})

	t.Run("MissingStore", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.db")
		var out, errb bytes.Buffer
		err := run(t.Context(), []string{"audit", "export"}, onlyDB(missing), &out, &errb)
		if err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("err = %v, want it to name %s", err, missing)
		}
		if _, err := os.Stat(missing); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the export created %s", missing)
		}
	})

	t.Run("Usage", func(t *testing.T) {
		for _, args := range [][]string{{"audit"}, {"audit", "import"}, {"audit", "export", "extra"}, {"audit", "export", "-since", "-1h"}, {"audit", "export", "-since", "7"}} {
			var out, errb bytes.Buffer
			if err := run(t.Context(), args, onlyDB(path), &out, &errb); err == nil || out.Len() != 0 {
				t.Errorf("%q: err = %v, stdout %q; want an error and no output", args, err, out.String())
			}
		}
		var out, errb bytes.Buffer
		if err := run(t.Context(), []string{"audit", "export", "-h"}, onlyDB(path), &out, &errb); !errors.Is(err, flag.ErrHelp) || !strings.Contains(errb.String(), "-since") {
			t.Errorf("audit export -h: %v\n%s", err, errb.String())
		}
	})
}

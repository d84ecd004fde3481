package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/store"
)

// Ensure invitebot backup writes a copy that opens with the store's
// records, over the running invitebot's socket while it holds the store,
// and read-only once it is stopped.
func TestBackup(t *testing.T) {
	h := start(t)
	now := time.Now()
	inv := &flows.Invitation{ID: "inv_backup", State: flows.StateNotified, CreatedAt: now, UpdatedAt: now,
		Request: flows.Request{Email: "bob@fabrikam.com"}}
	if err := h.app.db.(*store.DB).ImportInvitations(h.ctx, []*flows.Invitation{inv}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"INVITEBOT_DB": h.cfg.DBPath}
	backup := func(dest string) (string, error) {
		var out, errb bytes.Buffer
		err := run(h.ctx, []string{"backup", dest}, func(k string) string { return env[k] }, &out, &errb)
		return out.String() + errb.String(), err
	}
	has := func(path string) {
		t.Helper()
		db, err := store.Open(path, store.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("open the copy: %v", err)
		}
		defer db.Close()
		if got, err := db.Invitation(h.ctx, "inv_backup"); err != nil || got.Request.Email != "bob@fabrikam.com" {
			t.Errorf("the copy's invitation: %v, %v", got, err)
		}
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("the copy's mode: %v, %v", st, err)
		}
	}
	dir := t.TempDir()
	online := filepath.Join(dir, "online.db")
	out, err := backup(online)
	if err != nil || !strings.Contains(out, "from the running invitebot") {
		t.Fatalf("backup while serving: %v\n%s", err, out)
	}
	has(online)

	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(backupSocket(h.cfg.DBPath)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the backup socket outlives serve: %v", err)
	}
	offline := filepath.Join(dir, "offline.db")
	if out, err := backup(offline); err != nil || !strings.Contains(out, "read-only") {
		t.Fatalf("backup of a stopped store: %v\n%s", err, out)
	}
	has(offline)

	if _, err := backup(h.cfg.DBPath); err == nil || !strings.Contains(err.Error(), "is the store itself") {
		t.Errorf("backup onto the store: %v", err)
	}
	env["INVITEBOT_DB"] = filepath.Join(dir, "missing.db")
	if _, err := backup(filepath.Join(dir, "x.db")); err == nil || !strings.Contains(err.Error(), "no invitebot store at") {
		t.Errorf("backup of a missing store: %v", err)
	}
	if _, err := os.Stat(env["INVITEBOT_DB"]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("backup created the missing store: %v", err)
	}
	left, _ := os.ReadDir(dir)
	for _, e := range left {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("backup left %s behind", e.Name())
		}
	}
}

// backup copies bbolt files; on PostgreSQL it says what to use instead,
// without the URL's password, and writes nothing.
func TestBackupRefusesPostgres(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "copy.db")
	var out bytes.Buffer
	err := run(t.Context(), []string{"backup", dest}, func(k string) string {
		if k == "INVITEBOT_DB" {
			return "postgres://invitebot:s3cret@db.example.com/invitebot"
		}
		return ""
	}, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL database") || !strings.Contains(err.Error(), "store copy") ||
		strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("backup on PostgreSQL: %v", err)
	}
	if _, err := os.Stat(dest); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("backup wrote %s: %v", dest, err)
	}
}

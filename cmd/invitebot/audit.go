package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/store"
)

const auditUsage = `Usage:
  invitebot audit export [-since 720h] [-o FILE]

Writes invitebot's audit log (every step of every invitation, approvals and
lifecycle actions, with who took them) as CSV: time (RFC 3339, UTC),
invitation_id, object_id, actor (a Slack user ID or "invitebot"), action,
detail. It reads the store at INVITEBOT_DB (default ` + config.DefaultDB + `) and needs no
other configuration. bbolt allows one process per file: stop a running
invitebot first, or ask it from Slack with /invite-guest audit [days].
On PostgreSQL (INVITEBOT_DB a postgres:// URL) it reads while invitebot
runs; with INVITEBOT_DB_AZURE_AUTH=1 it signs in with a Microsoft Entra
access token from the AZURE_* credential, as invitebot serve does.

Flags:
`

// errStoreInUse is auditCmd's answer when invitebot serve holds the store.
var errStoreInUse = errors.New("the store is in use by a running invitebot; stop it, or use /invite-guest audit")

// auditCmd is `invitebot audit export`.
func auditCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runAudit(ctx, args, getenv, deps{}, stdout, stderr)
}

func runAudit(ctx context.Context, args []string, getenv func(string) string, d deps, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("audit export", flag.ContinueOnError)
	fset.SetOutput(stderr)
	since := fset.Duration("since", 30*24*time.Hour, "export the events of this last `duration`")
	out := fset.String("o", "", "write the CSV to `FILE` (mode 0600) instead of standard output")
	fset.Usage = func() {
		fmt.Fprint(stderr, auditUsage)
		fset.PrintDefaults()
	}
	if len(args) == 0 || args[0] != "export" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fset.Usage()
			return flag.ErrHelp
		}
		fset.Usage()
		return errors.New("audit: expected `export`")
	}
	if err := parseNoArgs(fset, args[1:]); err != nil {
		return err
	}
	if *since <= 0 {
		return fmt.Errorf("audit export: -since must be positive, got %s", *since)
	}
	path := getenv("INVITEBOT_DB")
	if path == "" {
		path = config.DefaultDB
	}
	pg := config.IsPostgresURL(path)
	// Open would create a missing file: an empty export would hide a wrong path.
	if _, err := os.Stat(path); !pg && errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no invitebot store at %s (set INVITEBOT_DB to the file invitebot serve uses)", path)
	}
	so, err := storeEnv(getenv, d)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	db, err := openStore(ctx, path, so)
	if errors.Is(err, store.ErrLocked) {
		return errStoreInUse
	}
	if err != nil {
		return err
	}
	from := time.Now().Add(-*since)
	events, err := db.AuditLog(ctx, from)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	var buf bytes.Buffer
	n, err := flows.WriteAuditCSV(&buf, events)
	if err != nil {
		return err
	}
	dest := "standard output"
	if *out == "" {
		if _, err := stdout.Write(buf.Bytes()); err != nil {
			return fmt.Errorf("write audit log: %w", err)
		}
	} else {
		if err := os.WriteFile(*out, buf.Bytes(), 0o600); err != nil {
			return fmt.Errorf("write audit log: %w", err)
		}
		dest = *out
	}
	fmt.Fprintf(stderr, "invitebot: wrote %d audit events since %s to %s\n", n, from.UTC().Format(time.RFC3339), dest)
	return nil
}

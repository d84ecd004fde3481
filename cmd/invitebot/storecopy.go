package main

import (
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
	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/store"
)

const storeUsage = `Usage: invitebot store copy FROM TO

Copies everything an invitebot store holds (invitations with their history,
guests, the audit log in its order, and the inviters' sealed sign-in
records) from FROM to TO, each a bbolt file
or a postgres:// URL (libpq's PG* variables fill what a URL leaves out, as
for INVITEBOT_DB), then reads TO back and checks the counts. Use it to move
an installation between bbolt and PostgreSQL, or to back up a bbolt file.

With INVITEBOT_DB_AZURE_AUTH=1, the password of FROM or TO, whichever is
a postgres:// URL, is a Microsoft Entra access token from the AZURE_*
credential, as for invitebot serve (Azure Database for PostgreSQL).

It refuses while a running invitebot holds FROM or TO (bbolt: the file's
lock; PostgreSQL: the unexpired lease of the replica running the background
work): stop invitebot first. It refuses a TO that holds any record, and
writes TO in one transaction, so a failed copy leaves it empty.
`

// snapshotter is a store that can be copied.
type snapshotter interface {
	backend
	Export(ctx context.Context) (*flows.Snapshot, error)
	Import(ctx context.Context, snap *flows.Snapshot) error
}

var (
	_ snapshotter = (*store.DB)(nil)
	_ snapshotter = (*pgstore.DB)(nil)
)

// storeCmd is `invitebot store copy FROM TO`.
func storeCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runStore(ctx, args, getenv, deps{}, stdout, stderr)
}

func runStore(ctx context.Context, args []string, getenv func(string) string, d deps, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("store copy", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() { fmt.Fprint(stderr, storeUsage) }
	if len(args) == 0 || args[0] != "copy" {
		fset.Usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errors.New("store: expected `copy FROM TO`")
	}
	if err := fset.Parse(args[1:]); err != nil {
		return err
	}
	if fset.NArg() != 2 {
		fset.Usage()
		return fmt.Errorf("store copy: expected FROM and TO, got %d argument(s)", fset.NArg())
	}
	from, to := fset.Arg(0), fset.Arg(1)
	if from == to {
		return errors.New("store copy: FROM and TO are the same store")
	}
	if !config.IsPostgresURL(from) {
		// Opening would create a missing file.
		if _, err := os.Stat(from); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("store copy: FROM: no store at %s", from)
		}
	}
	so, err := storeEnv(getenv, d)
	if err != nil {
		return fmt.Errorf("store copy: %w", err)
	}
	so.lockTimeout = time.Second
	src, err := openIdle(ctx, "FROM", from, so)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openIdle(ctx, "TO", to, so)
	if err != nil {
		return err
	}
	defer dst.Close()
	snap, err := src.Export(ctx)
	if err != nil {
		return fmt.Errorf("store copy: read FROM: %w", err)
	}
	if err := dst.Import(ctx, snap); err != nil {
		if errors.Is(err, store.ErrNotEmpty) || errors.Is(err, pgstore.ErrNotEmpty) {
			return fmt.Errorf("store copy: TO %s holds records; copy only into an empty store", config.RedactDB(to))
		}
		return fmt.Errorf("store copy: write TO: %w", err)
	}
	got, err := dst.Export(ctx)
	if err != nil {
		return fmt.Errorf("store copy: read TO back: %w", err)
	}
	if len(got.Invitations) != len(snap.Invitations) || len(got.Guests) != len(snap.Guests) || len(got.Audit) != len(snap.Audit) ||
		len(got.SignIn) != len(snap.SignIn) {
		return fmt.Errorf("store copy: TO holds %d invitations, %d guests, %d audit events, %d sign-in records; FROM %d, %d, %d, %d",
			len(got.Invitations), len(got.Guests), len(got.Audit), len(got.SignIn), len(snap.Invitations), len(snap.Guests), len(snap.Audit), len(snap.SignIn))
	}
	fmt.Fprintf(stdout, "copied %d invitations, %d guests, %d audit events, %d sign-in records from %s to %s (counts verified)\n",
		len(snap.Invitations), len(snap.Guests), len(snap.Audit), len(snap.SignIn), config.RedactDB(from), config.RedactDB(to))
	return nil
}

// openIdle opens the store db for `store copy`, refusing one a running
// invitebot holds.
func openIdle(ctx context.Context, role, db string, so storeOptions) (snapshotter, error) {
	name := config.RedactDB(db)
	b, err := openStore(ctx, db, so)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("store copy: %s %s is in use by a running invitebot (its file lock); stop it first", role, name)
	}
	if err != nil {
		return nil, fmt.Errorf("store copy: %s: %w", role, err)
	}
	if pg, ok := b.(*pgstore.DB); ok {
		l, held, err := pg.Lease(ctx, flows.LeaseBackground)
		if err == nil && held {
			err = fmt.Errorf("%s %s is in use by a running invitebot (%s holds its lease until %s); stop every replica first",
				role, name, l.Holder, l.Expires.UTC().Format(time.RFC3339))
		}
		if err != nil {
			_ = b.Close()
			return nil, fmt.Errorf("store copy: %w", err)
		}
	}
	return b.(snapshotter), nil
}

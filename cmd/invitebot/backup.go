package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/store"
)

const backupUsage = `Usage:
  invitebot backup FILE

Writes a consistent copy of invitebot's bbolt store (INVITEBOT_DB, default
` + config.DefaultDB + `) to FILE (mode 0600; written beside it and renamed, so FILE is
never half-written). The copy is the store as of one moment, from one
bbolt read transaction (Tx.WriteTo).

With no invitebot running, it opens the store read-only. While invitebot
serve runs it holds the store's lock; backup then asks the running process
for the copy over the Unix socket serve listens on beside the store
(INVITEBOT_DB plus ".backup.sock", mode 0600: only the user invitebot runs
as can connect), so it runs where that file is visible: on the same host,
or in the container (docker exec CONTAINER invitebot backup /data/backup.db).
The copy is checked (bbolt's consistency check) before it replaces FILE.
`

// backupSocket is where serve answers backup requests for the store at
// dbPath.
func backupSocket(dbPath string) string { return dbPath + ".backup.sock" }

// backupCmd is `invitebot backup FILE`.
func backupCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, backupUsage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("backup: give the file to write")
	}
	src := getenv("INVITEBOT_DB")
	if src == "" {
		src = config.DefaultDB
	}
	if config.IsPostgresURL(src) {
		// PostgreSQL has its own backups; this copies bbolt files.
		return fmt.Errorf("backup: INVITEBOT_DB is a PostgreSQL database (%s): back it up with its own tools (pg_dump, or the backups of Azure Database for PostgreSQL), or copy it into a bbolt file with invitebot store copy", config.RedactDB(src))
	}
	dest := fs.Arg(0)
	if sameFile(src, dest) {
		return fmt.Errorf("backup: %s is the store itself; choose another file", dest)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".invitebot-backup-*.tmp")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	defer tmp.Close()

	how := "read-only"
	n, err := backupOffline(src, tmp)
	if errors.Is(err, store.ErrLocked) {
		how = "from the running invitebot"
		n, err = backupOnline(ctx, src, tmp)
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// The copy must open and check clean before it replaces dest.
	cp, err := store.Open(tmp.Name(), store.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("backup: the copy does not open: %w", err)
	}
	cerr := cp.Check()
	_ = cp.Close()
	if cerr != nil {
		return fmt.Errorf("backup: the copy is damaged: %w", cerr)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "invitebot: wrote a copy of %s (%d bytes, %s) to %s\n", src, n, how, dest)
	return nil
}

// backupOffline copies the store opened read-only; store.ErrLocked means
// a running invitebot holds it.
func backupOffline(src string, w io.Writer) (int64, error) {
	db, err := store.Open(src, store.Options{ReadOnly: true, LockTimeout: 200 * time.Millisecond})
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("no invitebot store at %s (set INVITEBOT_DB to the file invitebot serve uses)", src)
	}
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return db.WriteTo(w)
}

// backupOnline asks the invitebot holding src for a copy: it answers on
// its backup socket with the copy's size (8 bytes, big-endian) and then
// the copy (store.DB.WriteSizedTo).
func backupOnline(ctx context.Context, src string, w io.Writer) (int64, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", backupSocket(src))
	if err != nil {
		return 0, fmt.Errorf("%s is held by a running invitebot, and its backup socket does not answer (%w): run backup where invitebot runs (in its container), or stop it", src, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	var size [8]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return 0, fmt.Errorf("read the copy's size: %w", err)
	}
	want := int64(binary.BigEndian.Uint64(size[:]))
	n, err := io.Copy(w, conn)
	if err == nil && n != want {
		err = fmt.Errorf("the copy ended after %d of %d bytes", n, want)
	}
	return n, err
}

// storeCopier is a store that can stream a consistent copy of itself
// (store.DB).
type storeCopier interface {
	WriteSizedTo(io.Writer) (int64, error)
}

// serveBackups answers backup requests on the socket beside the store
// until ctx is done. A store without a file (or a socket that cannot be
// made) only disables online backups, with a warning.
func serveBackups(ctx context.Context, db storeCopier, dbPath string, log *slog.Logger) {
	path := backupSocket(dbPath)
	// The store's lock is ours: a socket left by a crashed process is stale.
	_ = os.Remove(path)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		log.Warn("online backups unavailable: cannot listen on the backup socket; stop invitebot to back up", "socket", path, "err", err)
		return
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		log.Warn("online backups unavailable", "socket", path, "err", err)
		return
	}
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer os.Remove(path)
	for {
		conn, err := ln.Accept()
		if err != nil {
			return // closed at shutdown
		}
		go func() {
			defer conn.Close()
			began := time.Now()
			n, err := db.WriteSizedTo(conn)
			if err != nil {
				log.Warn("online backup failed", "err", err)
				return
			}
			log.Info("online backup written", "bytes", n, "took", time.Since(began).Round(time.Millisecond))
		}()
	}
}

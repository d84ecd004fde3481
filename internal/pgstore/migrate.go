package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema: migrations/NNNN_name.sql, applied in order, each in its own
// transaction, never edited once released (add a new file instead; keep
// them expand/contract so the previous release still runs on the new
// schema during a rolling deploy).
//
//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	files, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, f := range files {
		base := strings.TrimPrefix(f, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql", base)
		}
		raw, err := migrationFS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(raw)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: expected version %d", m.name, i+1)
		}
	}
	return out, nil
}

// SchemaVersion is the schema version this code migrates to.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrateLockKey is the pg_advisory_lock key under which replicas that
// start together migrate one after the other ("invitebot" in ASCII).
const migrateLockKey = 0x696e76697465626f

// migrate brings the schema up to date. It holds a session advisory lock
// on one connection for the whole run, so concurrent starts wait for the
// first and then find nothing to do. A run whose connection turned out
// dead is made again on another (as many times as tx would): it starts
// from the version schema_migrations holds, which a migration's own
// transaction records, so a migration whose COMMIT was lost with the
// connection is not applied twice, and the lock died with the session.
func migrate(ctx context.Context, pool *pgxpool.Pool) (version int, err error) {
	ms, err := migrations()
	if err != nil {
		return 0, err
	}
	for try := 1; ; try++ {
		conn, err := pool.Acquire(ctx)
		if err != nil {
			return 0, err
		}
		version, err = migrateOn(ctx, conn, ms)
		again := dead(ctx, conn, err) && try < int(pool.Config().MaxConns)+1
		conn.Release()
		if !again {
			return version, err
		}
	}
}

// migrateOn is one run of migrate on conn.
func migrateOn(ctx context.Context, conn *pgxpool.Conn, ms []migration) (version int, err error) {
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLockKey)); err != nil {
		return 0, fmt.Errorf("take the migration lock: %w", err)
	}
	defer func() {
		// A failed unlock (the connection broke) ends the session, which
		// releases the lock too; drop the connection to be sure.
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrateLockKey)); uerr != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY,
		name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, err
	}
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&version); err != nil {
		return 0, err
	}
	if latest := len(ms); version > latest {
		return version, fmt.Errorf("schema version %d is newer than this invitebot understands (%d): upgrade invitebot", version, latest)
	}
	for _, m := range ms[version:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return version, fmt.Errorf("migration %s: %w", m.name, err)
		}
		version = m.version
	}
	return version, nil
}

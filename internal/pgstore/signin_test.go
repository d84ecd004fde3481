package pgstore_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
)

// Ensure migration 3 gives the connect links and sign-ins in progress that
// a version 2 database holds without an expiry one that covers their 10
// minutes, and its connections none.
func TestMigrateVersion2SignInExpiry(t *testing.T) {
	url := pgtest.URL(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// The database as version 2 of the schema left it.
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"0001_init.sql", "0002_invite_window.sql"} {
		sql, err := os.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", i+1, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"conn/U1", "link/a", "flow/b"} {
		if _, err := conn.Exec(ctx, "INSERT INTO signin (key, value) VALUES ($1, 'v')", k); err != nil {
			t.Fatal(err)
		}
	}
	opened := time.Now()
	db, err := pgstore.Open(ctx, url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Version() < 3 {
		t.Fatalf("Version = %d", db.Version())
	}
	// The test's clock and the server's are the same machine's.
	if n, err := db.DeleteExpiredSignInRecords(ctx, opened.Add(pgstoreLegacyTTL-5*time.Second), 10); n != 0 || err != nil {
		t.Errorf("expired within 10 minutes of the migration = %d, %v; want 0", n, err)
	}
	if n, err := db.DeleteExpiredSignInRecords(ctx, time.Now().Add(pgstoreLegacyTTL+5*time.Second), 10); n != 2 || err != nil {
		t.Errorf("expired after 10 minutes = %d, %v; want 2 (the link and the sign-in)", n, err)
	}
	for k, want := range map[string]bool{"conn/U1": true, "link/a": false, "flow/b": false} {
		if _, err := db.SignInRecord(ctx, k); (err == nil) != want {
			t.Errorf("%s kept = %v, want %v", k, err == nil, want)
		}
	}
}

// pgstoreLegacyTTL is what migration 3 gives the older links and sign-ins.
const pgstoreLegacyTTL = 10 * time.Minute

package pgstore_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// open returns n stores (replicas) on one fresh database.
func open(t *testing.T, n int) []*pgstore.DB {
	t.Helper()
	url := pgtest.URL(t)
	dbs := make([]*pgstore.DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { dbs[i], errs[i] = pgstore.Open(t.Context(), url, pgstore.Options{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { _ = dbs[i].Close() })
	}
	return dbs
}

// Replicas that start together all migrate safely to the same version.
func TestOpenConcurrentlyMigratesOnce(t *testing.T) {
	for _, db := range open(t, 4) {
		if got, want := db.Version(), pgstore.SchemaVersion(); got != want || want < 1 {
			t.Errorf("Version = %d, want %d", got, want)
		}
	}
}

// A database migrated by a newer invitebot is refused, not written.
func TestOpenRefusesNewerSchema(t *testing.T) {
	url := pgtest.URL(t)
	first, err := pgstore.Open(t.Context(), url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	first.Close()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "INSERT INTO schema_migrations (version, name) VALUES (999, '0999_future.sql')"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgstore.Open(t.Context(), url, pgstore.Options{}); err == nil || !strings.Contains(err.Error(), "schema version 999 is newer") {
		t.Errorf("Open of a newer schema: %v", err)
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	if _, err := pgstore.Open(context.Background(), "postgres://u:s3cret@%zz/x", pgstore.Options{}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Open with a bad URL: %v", err)
	}
}

// With Options.Password every new connection asks for the password (an
// Entra token on Azure); when it cannot be had, nothing connects.
func TestPasswordFunc(t *testing.T) {
	url := pgtest.URL(t)
	var calls atomic.Int32
	db, err := pgstore.Open(t.Context(), url, pgstore.Options{Password: func(context.Context) (string, error) {
		calls.Add(1)
		return "token", nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if calls.Load() == 0 {
		t.Error("Password was not asked for")
	}
	_, err = pgstore.Open(t.Context(), url, pgstore.Options{Password: func(context.Context) (string, error) {
		return "", errors.New("no token for you")
	}})
	if err == nil || !strings.Contains(err.Error(), "no token for you") {
		t.Errorf("Open without a password: %v", err)
	}
}

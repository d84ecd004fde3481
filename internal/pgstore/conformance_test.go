package pgstore_test

import (
	"testing"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
)

func mustOpen(t *testing.T, url string) *pgstore.DB {
	t.Helper()
	db, err := pgstore.Open(t.Context(), url, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// The PostgreSQL store passes the store conformance suite that bbolt and
// the in-memory fake pass.
func TestConformance(t *testing.T) {
	flowstest.TestStore(t, func(t *testing.T) flows.Store { return mustOpen(t, pgtest.URL(t)) })
}

// Two replicas (two pools) on one database: creates, updates and leases
// race across them.
func TestConformancePair(t *testing.T) {
	flowstest.TestStorePair(t, func(t *testing.T) (flows.Store, flows.Store) {
		url := pgtest.URL(t)
		return mustOpen(t, url), mustOpen(t, url)
	})
}

func TestSignInStore(t *testing.T) {
	flowstest.TestSignInStore(t, func(t *testing.T) flows.SignInStore { return mustOpen(t, pgtest.URL(t)) })
}

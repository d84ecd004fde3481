package signin_test

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
	"github.com/invitebot/invitebot/internal/signin"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Ensure two replicas (two Services, each with its own handle on one
// PostgreSQL database) refreshing one person at once take turns: the
// token service rotates the refresh token at each use, and every refresh
// redeems the one the previous wrote back, so exactly one refresh grant
// reaches it per Token call, none is refused (invalid_grant), and the
// person stays connected. One-minute access tokens make MSAL refresh at
// each use.
func TestConcurrentRefreshAcrossReplicas(t *testing.T) {
	url := pgtest.URL(t)
	open := func() flows.SignInStore {
		db, err := pgstore.Open(t.Context(), url, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		return db
	}
	testConcurrentRefresh(t, open(), open())
}

// The same with two Services on one in-memory store (one process).
func TestConcurrentRefreshOneStore(t *testing.T) {
	s := &flowstest.SignInStore{}
	testConcurrentRefresh(t, s, s)
}

func testConcurrentRefresh(t *testing.T, a, b flows.SignInStore) {
	f := newFixture(t, time.Minute)
	if _, code, body := f.connect(t, "U1", dana); code != 200 {
		t.Fatalf("connect: %d %s", code, body)
	}
	// The sealed connection, as the callback stored it, in the shared store.
	raw, err := f.store.SignInRecord(t.Context(), "conn/U1")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.PutSignInRecord(t.Context(), "conn/U1", raw, time.Time{}); err != nil {
		t.Fatal(err)
	}
	replicas := []*signin.Service{f.serviceOn(t, a, f.key, nil), f.serviceOn(t, b, f.key, nil)}
	_, before := f.sts.Grants()
	asked := f.sts.RefreshRequests()
	const workers, rounds = 6, 4
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for range rounds {
				if _, err := replicas[i%2].Token(t.Context(), "U1"); err != nil {
					t.Errorf("Token on replica %d: %v", i%2, err)
				}
			}
		})
	}
	wg.Wait()
	_, after := f.sts.Grants()
	if got, sent := after-before, f.sts.RefreshRequests()-asked; got != workers*rounds || sent != workers*rounds {
		t.Errorf("%d refreshes granted of %d sent; want %d of %d (one per Token call)", got, sent, workers*rounds, workers*rounds)
	}
	for i, r := range replicas {
		if c, err := r.Connection(t.Context(), "U1"); err != nil || c.ObjectID != dana.ObjectID {
			t.Errorf("replica %d: Connection = %+v, %v; want still connected", i, c, err)
		}
	}
	if _, err := replicas[0].Token(t.Context(), "U1"); err != nil {
		t.Errorf("Token afterwards: %v", err)
	}
}

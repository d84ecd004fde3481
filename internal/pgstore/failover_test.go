package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
)

// admin is a connection of the test's own to the database, apart from the
// stores' pools.
func admin(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// failover ends every other session on the database, as a failover or a
// restart does, and waits until they are gone.
func failover(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	ctx := t.Context()
	const others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
	if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) "+others); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) "+others).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still there after pg_terminate_backend", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openFailover opens a store with pgxpool's idle ping off (every dead
// connection is then met by a statement, however slow the machine), its
// pool holding poolConns connections.
func openFailover(t *testing.T, url string) *pgstore.DB {
	t.Helper()
	db, err := pgstore.OpenNoIdlePing(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

const poolConns = 3

// dropAll fills db's pool with poolConns connections, then ends every
// session: all of them are dead in the pool.
func dropAll(t *testing.T, db *pgstore.DB, conn *pgx.Conn) {
	t.Helper()
	if err := db.Fill(t.Context(), poolConns); err != nil {
		t.Fatal(err)
	}
	if n := db.PoolStat().IdleConns(); n < poolConns {
		t.Fatalf("%d idle connections, want %d", n, poolConns)
	}
	failover(t, conn)
}

func failoverInvitation(id, email string) *flows.Invitation {
	at := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	return &flows.Invitation{
		ID: id, Origin: flows.Origin{Kind: flows.OriginDialog, Key: "V" + id}, State: flows.StateChecking,
		CreatedAt: at, UpdatedAt: at,
		Inviter: flows.Inviter{TeamID: "T1", UserID: "UALICE"},
		Request: flows.Request{Email: email, Delivery: flows.DeliverySlackLink, UserType: flows.UserTypeGuest},
		History: []flows.Event{{At: at, InvitationID: id, Actor: "UALICE", Action: "requested"}},
	}
}

// Ensure that after the database ended every session (a failover), the
// next read, write, lease renewal, invitation slot and sign-in lock each
// succeed, on new connections, and a write is applied once.
func TestFailoverNextCallsSucceed(t *testing.T) {
	url := pgtest.URL(t)
	db := openFailover(t, url)
	conn := admin(t, url)
	ctx := t.Context()
	if _, err := db.CreateInvitation(ctx, failoverInvitation("I1", "bob@example.com")); err != nil {
		t.Fatal(err)
	}
	lease, err := db.AcquireLease(ctx, "loops", "r1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	calls := []struct {
		name string
		call func() error
	}{
		{"read", func() error {
			inv, err := db.Invitation(ctx, "I1")
			if err == nil && inv.ID != "I1" {
				t.Errorf("read %s", inv.ID)
			}
			return err
		}},
		{"list", func() error { _, err := db.Invitations(ctx, flows.InvitationFilter{}); return err }},
		{"create", func() error {
			_, err := db.CreateInvitation(ctx, failoverInvitation("I2", "carol@example.com"))
			return err
		}},
		{"update", func() error {
			_, err := db.UpdateInvitation(ctx, "I1", func(inv *flows.Invitation) error {
				inv.History = append(inv.History, flows.Event{At: inv.CreatedAt, InvitationID: inv.ID, Actor: flows.ActorBot, Action: "noted"})
				return nil
			})
			return err
		}},
		{"fenced update", func() error {
			_, err := db.UpdateInvitation(flows.WithFence(ctx, lease), "I2", func(inv *flows.Invitation) error {
				inv.Runner = "r1"
				return nil
			})
			return err
		}},
		{"lease renewal", func() error {
			l, err := db.AcquireLease(ctx, "loops", "r1", time.Minute)
			if err == nil && l.Epoch != lease.Epoch {
				t.Errorf("renewal changed the epoch: %d, was %d", l.Epoch, lease.Epoch)
			}
			return err
		}},
		{"invite slot", func() error {
			wait, err := db.TakeInviteSlot(ctx, 10, time.Minute)
			if err == nil && wait != 0 {
				t.Errorf("invite slot: wait %v", wait)
			}
			return err
		}},
		{"throttle", func() error { return db.ThrottleInvites(ctx, time.Millisecond) }},
		{"sign-in put", func() error { return db.PutSignInRecord(ctx, "flow/x", []byte("v"), time.Time{}) }},
		{"sign-in take", func() error { _, err := db.TakeSignInRecord(ctx, "flow/x"); return err }},
		{"sign-in lock", func() error {
			l, err := db.LockSignInRecord(ctx, "conn/U1")
			if err != nil {
				return err
			}
			defer l.Unlock()
			return l.Put(ctx, []byte("v"), time.Time{})
		}},
		{"export", func() error { _, err := db.Export(ctx); return err }},
		{"stats", func() error { _, err := db.Stats(ctx); return err }},
		{"ping", func() error { return db.Ping(ctx) }},
	}
	for _, c := range calls {
		dropAll(t, db, conn)
		opened := db.PoolStat().NewConnsCount()
		if err := c.call(); err != nil {
			t.Errorf("%s after a failover: %v", c.name, err)
		}
		if db.PoolStat().NewConnsCount() == opened {
			t.Errorf("%s after a failover opened no new connection", c.name)
		}
	}

	// The writes were each applied once.
	inv, err := db.Invitation(ctx, "I1")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.History) != 2 {
		t.Errorf("I1's history has %d events, want 2: %+v", len(inv.History), inv.History)
	}
	audit, err := db.AuditLog(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 3 { // I1 requested and noted, I2 requested
		t.Errorf("audit log has %d events, want 3: %+v", len(audit), audit)
	}
	var slots int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM invite_slots").Scan(&slots); err != nil {
		t.Fatal(err)
	}
	if slots != 1 {
		t.Errorf("%d invitation slots taken, want 1", slots)
	}
}

// Ensure a write whose COMMIT reached the server, and whose connection
// then died before the answer came, is not made again: the store cannot
// know whether it was applied, so it returns the error and runs the
// caller's function once. (Here the COMMIT waits in a deferred trigger
// for a lock the test holds, while the test ends the session.)
func TestFailoverDuringCommitNotRetried(t *testing.T) {
	url := pgtest.URL(t)
	db := openFailover(t, url)
	conn := admin(t, url)
	ctx := t.Context()
	if _, err := db.CreateInvitation(ctx, failoverInvitation("I1", "bob@example.com")); err != nil {
		t.Fatal(err)
	}
	const lockKey = 4242
	for _, sql := range []string{
		"CREATE SEQUENCE commits",
		`CREATE FUNCTION at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM nextval('commits'); PERFORM pg_advisory_xact_lock(4242); RETURN NULL; END $$`,
		`CREATE CONSTRAINT TRIGGER at_commit AFTER UPDATE ON invitations
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION at_commit()`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		t.Fatal(err)
	}

	calls := 0
	done := make(chan error, 1)
	go func() {
		_, err := db.UpdateInvitation(ctx, "I1", func(inv *flows.Invitation) error {
			calls++
			inv.State = flows.StateFailed
			return nil
		})
		done <- err
	}()
	// The COMMIT is in, waiting for the lock: end its session.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
			AND wait_event_type = 'Lock' AND query ILIKE 'commit%')`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the COMMIT did not reach the trigger")
		}
		time.Sleep(10 * time.Millisecond)
	}
	failover(t, conn)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey); err != nil {
		t.Fatal(err)
	}

	if err := <-done; err == nil {
		t.Fatal("UpdateInvitation whose COMMIT died with its connection returned no error")
	}
	if calls != 1 {
		t.Errorf("the update function ran %d times, want 1", calls)
	}
	// Here the server had not committed it when the session ended.
	if inv, err := db.Invitation(ctx, "I1"); err != nil || inv.State != flows.StateChecking {
		t.Errorf("I1 after the failed COMMIT: %+v, %v; want it checking", inv, err)
	}
	var commits int64
	if err := conn.QueryRow(ctx, "SELECT last_value FROM commits").Scan(&commits); err != nil {
		t.Fatal(err)
	}
	if commits != 1 {
		t.Errorf("%d COMMITs reached the server, want 1", commits)
	}
}

// Ensure a sign-in lock whose session ended (the lock went with it) tells
// its holder so, rather than writing without the lock, while another
// replica takes the lock.
func TestFailoverSignInLockLost(t *testing.T) {
	url := pgtest.URL(t)
	a, b := openFailover(t, url), openFailover(t, url)
	conn := admin(t, url)
	ctx := t.Context()
	held, err := a.LockSignInRecord(ctx, "conn/U1")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	failover(t, conn)

	other, err := b.LockSignInRecord(ctx, "conn/U1")
	if err != nil {
		t.Fatalf("the other replica's lock after the failover: %v", err)
	}
	defer other.Unlock()
	if err := other.Put(ctx, []byte("b"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := held.Put(ctx, []byte("a"), time.Time{}); !errors.Is(err, pgstore.ErrSignInLockLost) {
		t.Errorf("Put under the lost lock: %v, want ErrSignInLockLost", err)
	}
	if _, err := held.Record(ctx); !errors.Is(err, pgstore.ErrSignInLockLost) {
		t.Errorf("Record under the lost lock: %v, want ErrSignInLockLost", err)
	}
	if v, err := b.SignInRecord(ctx, "conn/U1"); err != nil || string(v) != "b" {
		t.Errorf("record = %q, %v; want the other replica's", v, err)
	}
}

package flowstest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
)

// TestSignInStore checks a flows.SignInStore's contract; newStore returns
// an empty store.
func TestSignInStore(t *testing.T, newStore func(t *testing.T) flows.SignInStore) {
	t.Run("Records", func(t *testing.T) { testSignInRecords(t, newStore(t)) })
	t.Run("Expiry", func(t *testing.T) { testSignInExpiry(t, newStore(t)) })
	t.Run("Lock", func(t *testing.T) { testSignInLock(t, newStore(t)) })
	t.Run("LockExcludes", func(t *testing.T) { testSignInLockExcludes(t, newStore(t)) })
}

func testSignInRecords(t *testing.T, s flows.SignInStore) {
	ctx := t.Context()
	if _, err := s.SignInRecord(ctx, "conn/U1"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("SignInRecord(missing) err = %v, want ErrNotFound", err)
	}
	if _, err := s.TakeSignInRecord(ctx, "conn/U1"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("TakeSignInRecord(missing) err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteSignInRecord(ctx, "conn/U1"); err != nil {
		t.Errorf("DeleteSignInRecord(missing) = %v", err)
	}
	val := []byte("v1")
	if err := s.PutSignInRecord(ctx, "conn/U1", val, time.Time{}); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X' // the store keeps its own copy
	if err := s.PutSignInRecord(ctx, "conn/U2", []byte("other"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, err := s.SignInRecord(ctx, "conn/U1")
	if err != nil || string(got) != "v1" {
		t.Fatalf("SignInRecord = %q, %v; want v1", got, err)
	}
	if err := s.PutSignInRecord(ctx, "conn/U1", []byte("v2"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.SignInRecord(ctx, "conn/U1"); string(got) != "v2" {
		t.Errorf("after replace = %q, want v2", got)
	}
	if got, err := s.TakeSignInRecord(ctx, "conn/U1"); err != nil || string(got) != "v2" {
		t.Errorf("TakeSignInRecord = %q, %v", got, err)
	}
	if _, err := s.TakeSignInRecord(ctx, "conn/U1"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("second TakeSignInRecord err = %v, want ErrNotFound (single use)", err)
	}
	if err := s.DeleteSignInRecord(ctx, "conn/U2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignInRecord(ctx, "conn/U2"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("after delete err = %v, want ErrNotFound", err)
	}
}

// testSignInExpiry checks that expired records, and only those, are
// deleted, earliest first and at most limit at a time, and that a record's
// expiry follows its latest write.
func testSignInExpiry(t *testing.T, s flows.SignInStore) {
	ctx := t.Context()
	put := func(key string, expires time.Time) {
		t.Helper()
		if err := s.PutSignInRecord(ctx, key, []byte("v:"+key), expires); err != nil {
			t.Fatalf("PutSignInRecord(%s): %v", key, err)
		}
	}
	sweep := func(before time.Time, limit, want int) {
		t.Helper()
		n, err := s.DeleteExpiredSignInRecords(ctx, before, limit)
		if err != nil || n != want {
			t.Fatalf("DeleteExpiredSignInRecords(%s, %d) = %d, %v; want %d", before.Sub(base), limit, n, err, want)
		}
	}
	present := func(key string, want bool) {
		t.Helper()
		_, err := s.SignInRecord(ctx, key)
		if got := err == nil; got != want || (err != nil && !errors.Is(err, flows.ErrNotFound)) {
			t.Errorf("%s present = %v (%v), want %v", key, got, err, want)
		}
	}
	at := func(n int) time.Time { return base.Add(time.Duration(n) * time.Minute) }

	sweep(at(0), 10, 0) // an empty store
	put("conn/U1", time.Time{})
	put("link/b", at(2))
	put("link/a", at(1))
	put("flow/c", at(3))
	put("link/d", at(1)) // moved later by its next write
	put("link/d", at(60))
	put("link/e", at(1)) // kept for good by its next write
	put("link/e", time.Time{})
	put("link/f", at(1)) // taken before it expires
	put("link/g", at(1)) // deleted before it expires
	if _, err := s.TakeSignInRecord(ctx, "link/f"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSignInRecord(ctx, "link/g"); err != nil {
		t.Fatal(err)
	}

	sweep(at(1), 10, 0) // expiring at at(1) is not before it
	present("link/a", true)
	sweep(at(10), 1, 1) // the earliest first
	present("link/a", false)
	present("link/b", true)
	sweep(at(10), 10, 2)
	for _, k := range []string{"link/b", "flow/c"} {
		present(k, false)
	}
	for _, k := range []string{"conn/U1", "link/d", "link/e"} {
		present(k, true)
	}
	// An expired record not yet deleted is still read.
	put("flow/h", at(5))
	present("flow/h", true)
	sweep(at(24*60), 10, 2) // flow/h and link/d
	for _, k := range []string{"flow/h", "link/d"} {
		present(k, false)
	}
	if got, err := s.SignInRecord(ctx, "link/e"); err != nil || string(got) != "v:link/e" {
		t.Errorf("link/e = %q, %v", got, err)
	}
	present("conn/U1", true)
	sweep(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 10, 0)
}

// testSignInLock checks a record's lock: reads and writes through it, a
// second holder of the key waits (and gives up with its context), another
// key's does not, and the waiter gets the lock once it is released.
func testSignInLock(t *testing.T, s flows.SignInStore) {
	ctx := t.Context()
	l1, err := s.LockSignInRecord(ctx, "conn/U1")
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Unlock() // if the test ends early; a second Unlock does nothing
	if _, err := l1.Record(ctx); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("Record(missing) err = %v, want ErrNotFound", err)
	}
	if err := l1.Put(ctx, []byte("a"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.SignInRecord(ctx, "conn/U1"); err != nil || string(got) != "a" {
		t.Errorf("written through the lock: %q, %v", got, err)
	}
	other, err := s.LockSignInRecord(ctx, "conn/U2")
	if err != nil {
		t.Fatalf("another key's lock: %v", err)
	}
	other.Unlock()
	// While l1 holds the key, a second holder cannot have it.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	l2, err := s.LockSignInRecord(short, "conn/U1")
	cancel()
	if err == nil {
		l2.Unlock()
		t.Fatal("a second holder took the lock while the first held it")
	}
	got := make(chan flows.SignInLock, 1)
	go func() {
		l, err := s.LockSignInRecord(ctx, "conn/U1")
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	l1.Unlock()
	var l3 flows.SignInLock
	select {
	case l3 = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the lock was not handed on after Unlock")
	}
	if l3 == nil {
		return
	}
	defer l3.Unlock()
	if v, err := l3.Record(ctx); err != nil || string(v) != "a" {
		t.Errorf("Record = %q, %v; want a", v, err)
	}
	if err := l3.Put(ctx, []byte("b"), base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteExpiredSignInRecords(ctx, base.Add(time.Hour), 10); n != 1 || err != nil {
		t.Errorf("an expiry written through the lock: swept %d, %v; want 1", n, err)
	}
	if err := l3.Put(ctx, []byte("c"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := l3.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignInRecord(ctx, "conn/U1"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("after Delete through the lock: %v", err)
	}
}

// testSignInLockExcludes checks that holders of a key's lock exclude each
// other: each adds one to a counter read and written through the lock, so
// any two holders at once lose an increment.
func testSignInLockExcludes(t *testing.T, s flows.SignInStore) {
	ctx := t.Context()
	const workers, rounds = 6, 5
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				l, err := s.LockSignInRecord(ctx, "conn/U1")
				if err != nil {
					t.Error(err)
					return
				}
				n := 0
				if v, err := l.Record(ctx); err == nil {
					n, _ = strconv.Atoi(string(v))
				} else if !errors.Is(err, flows.ErrNotFound) {
					t.Error(err)
				}
				time.Sleep(time.Millisecond) // widen the window a second holder would use
				if err := l.Put(ctx, []byte(strconv.Itoa(n+1)), time.Time{}); err != nil {
					t.Error(err)
				}
				l.Unlock()
			}
		})
	}
	wg.Wait()
	if v, err := s.SignInRecord(ctx, "conn/U1"); err != nil || string(v) != strconv.Itoa(workers*rounds) {
		t.Errorf("counter = %q, %v; want %d (holders overlapped)", v, err, workers*rounds)
	}
}

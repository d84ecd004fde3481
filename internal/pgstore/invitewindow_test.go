package pgstore_test

import (
	"testing"
	"time"
)

// Ensure two replicas share one invitation window: together they get limit
// slots per window, the next waits no longer than the window, and a 429
// recorded by one makes the other wait it out (a shorter one later does not
// shorten it).
func TestInviteWindowSharedByReplicas(t *testing.T) {
	dbs := open(t, 2)
	ctx := t.Context()
	const limit, per = 3, time.Minute
	for i := range limit {
		wait, err := dbs[i%2].TakeInviteSlot(ctx, limit, per)
		if err != nil || wait != 0 {
			t.Fatalf("slot %d on replica %d: wait %v, %v; want a slot", i, i%2, wait, err)
		}
	}
	for _, db := range dbs {
		wait, err := db.TakeInviteSlot(ctx, limit, per)
		if err != nil || wait <= 0 || wait > per {
			t.Errorf("slot %d: wait %v, %v; want 0 < wait <= %v", limit, wait, err, per)
		}
	}

	// A fresh window (another limit): the 429 recorded by replica 0 holds
	// replica 1 back for about its Retry-After.
	if err := dbs[0].ThrottleInvites(ctx, 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := dbs[1].ThrottleInvites(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	wait, err := dbs[1].TakeInviteSlot(ctx, 100, per)
	if err != nil || wait <= 9*time.Minute || wait > 10*time.Minute {
		t.Errorf("after a 10-minute throttle: wait %v, %v; want about 10m", wait, err)
	}
}

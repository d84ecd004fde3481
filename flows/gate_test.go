package flows

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestGateTrackerYieldsToInteractiveCalls(t *testing.T) {
	var g gate
	now := time.Now
	noSleep := func(context.Context, time.Duration) error { return nil }
	g.enter()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := g.wait(ctx, now, noSleep); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait while an interactive call is in flight = %v, want it to block until cancelled", err)
	}
	g.leave(nil, now())
	if err := g.wait(ctx, now, noSleep); err != nil {
		t.Fatalf("wait with no interactive call = %v, want nil", err)
	}
}

func TestGateHonoursThrottlingSeenByInteractiveCalls(t *testing.T) {
	var g gate
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return t0 }
	var slept []time.Duration
	sleep := func(_ context.Context, d time.Duration) error { slept = append(slept, d); return nil }
	g.enter()
	g.leave(&DirectoryError{Status: 429, RetryAfter: 2500 * time.Millisecond}, now())
	if err := g.wait(t.Context(), now, sleep); err != nil {
		t.Fatal(err)
	}
	if len(slept) != 1 || slept[0] != 2500*time.Millisecond {
		t.Errorf("slept %v, want one wait of the Retry-After (2.5 s)", slept)
	}
}

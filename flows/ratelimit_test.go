package flows

import (
	"context"
	"testing"
	"time"
)

// The window admits n events at once, then holds the next until the
// oldest leaves the window; a cancelled wait gives up.
func TestWindowPacesEvents(t *testing.T) {
	w := newWindow(3, time.Hour)
	for range 3 {
		if err := w.wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := w.wait(ctx); err == nil {
		t.Fatal("a fourth event within the window was admitted")
	}
	w.past[0] = time.Now().Add(-2 * time.Hour) // the oldest has left the window
	if err := w.wait(t.Context()); err != nil {
		t.Fatalf("after the oldest left: %v", err)
	}
	if len(w.past) != 3 {
		t.Errorf("window holds %d events, want 3", len(w.past))
	}
}

// Ensure an admission that had to wait is reported, and one that did not
// is not.
func TestWindowReportsWaits(t *testing.T) {
	w := newWindow(1, time.Hour)
	var waits []time.Duration
	w.waited = func(d time.Duration) { waits = append(waits, d) }
	if err := w.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	w.past[0] = time.Now().Add(-time.Hour + 20*time.Millisecond) // leaves the window in 20 ms
	if err := w.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(waits) != 1 || waits[0] <= 0 {
		t.Errorf("waits = %v, want one wait (the second admission's)", waits)
	}
}

package main

// Two replicas in Socket Mode on one PostgreSQL: each holds its own
// connection, Slack sends each envelope to one of them, and every
// invitation is made once whichever replica gets the command, the
// submission, or Slack's retry of the submission.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
)

// secondReplica starts another invitebot on h's emulators and store (a
// replica: same configuration, its own name), in h's transport, and waits
// until it has connected over Socket Mode.
func (h *harness) secondReplica(t *testing.T) {
	t.Helper()
	connects := h.slack.Connections()
	a, err := newApp(h.cfg, h.log, h.deps)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.serve(ctx, ln) }()
	t.Cleanup(func() { // before the emulators close (cleanups run last first)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("second replica: %v", err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("second replica: %v", err)
		}
	})
	if err := h.slack.WaitConnected(h.ctx, connects+1); err != nil {
		t.Fatalf("the second replica did not connect over Socket Mode: %v", err)
	}
}

func TestReplicasSocketMode(t *testing.T) {
	h := startOn(t, overSocket, deps{pollInterval: -1}, pgtest.URL(t))
	h.secondReplica(t)
	var (
		mu   sync.Mutex
		next int
	)
	h.slack.SetSocketPicker(func(n int) int { // each replica in turn
		mu.Lock()
		defer mu.Unlock()
		next++
		return next % n
	})
	const guests = 6
	for i := range guests {
		view := h.open(t, "")
		values := inviteValues(fmt.Sprintf("guest%d@fabrikam.com", i), "Guest", "slack_link", emuPortal)
		if i%2 == 0 {
			h.submit(t, view, values)
			continue
		}
		// Slack delivering the same submission twice (its retry), to each
		// replica once.
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { h.submit(t, view, values) })
		}
		wg.Wait()
	}
	ctx, cancel := context.WithTimeout(h.ctx, 60*time.Second)
	defer cancel()
	outcome := func() map[string]int {
		n := map[string]int{}
		for _, m := range h.dmsTo(ann) {
			if email, ok := strings.CutPrefix(m.Text, "Invited "); ok {
				n[email]++
			}
		}
		return n
	}
	if err := h.slack.WaitFor(ctx, func() bool { return len(outcome()) == guests }); err != nil {
		t.Fatalf("%d of %d invitations finished: %v", len(outcome()), guests, err)
	}
	for i := range guests {
		email := fmt.Sprintf("guest%d@fabrikam.com", i)
		if n := outcome()[email]; n != 1 {
			t.Errorf("%d outcome DMs for %s, want 1", n, email)
		}
		posts := 0
		for _, inv := range h.tenant.Invitations() {
			if inv.Body["invitedUserEmailAddress"] == email {
				posts++
			}
		}
		if posts != 1 {
			t.Errorf("%d POST /invitations for %s, want 1", posts, email)
		}
	}
	d := h.slack.SocketDeliveries()
	if len(d) < 2 || d[len(d)-1] == 0 || d[len(d)-2] == 0 {
		t.Errorf("envelopes per connection %v: both replicas should have been sent some", d)
	}
}

//go:build !noemulators

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
)

// seedPending records n invitations that wait for their guests to accept,
// with matching guests in the emulated tenant, as n invitations through
// the dialog would leave them (without their Slack traffic).
func (e *emulated) seedPending(ctx context.Context, n int) ([]*flows.Invitation, error) {
	run := loadSeq.Add(1)
	now := time.Now()
	out := make([]*flows.Invitation, 0, n)
	for i := range n {
		email := fmt.Sprintf("pending%d-%d@fabrikam.com", run, i)
		u := e.tenant.AddUser(graphfake.User{DisplayName: "Pending guest", Mail: email, UserType: "Guest",
			ExternalUserState: flows.ExternalPending, ExternalUserStateChangeDateTime: now, CreationType: "Invitation"})
		inv := &flows.Invitation{
			ID: fmt.Sprintf("inv_seed_%d_%d", run, i), Inviter: flows.Inviter{TeamID: emuTeam, UserID: fmt.Sprintf("U0SEED%d", i%50)},
			Request:  flows.Request{Email: email, DisplayName: "Pending guest", RedirectURL: flows.Policy{}.DefaultRedirectURL, Delivery: flows.DeliverySlackLink, UserType: flows.UserTypeGuest},
			State:    flows.StateNotified,
			ObjectID: u.ID, InvitedAt: now, Tracking: flows.Tracking{External: flows.ExternalPending},
			CreatedAt: now, UpdatedAt: now,
		}
		out = append(out, inv)
	}
	// One transaction: the load measures tracking, not the seeding.
	db, ok := e.app.db.(interface {
		ImportInvitations(context.Context, []*flows.Invitation) error
	})
	if !ok {
		return nil, errors.New("seed invitations: the emulated store cannot import")
	}
	if err := db.ImportInvitations(ctx, out); err != nil {
		return nil, fmt.Errorf("seed invitations: %w", err)
	}
	return out, nil
}

// trackLoad seeds n pending invitations and runs rounds tracking cycles,
// returning the Graph requests per cycle and each cycle's duration.
func (e *emulated) trackLoad(ctx context.Context, n, rounds int) (requests float64, took latencies, err error) {
	if _, err := e.seedPending(ctx, n); err != nil {
		return 0, nil, err
	}
	before := e.batchRequests()
	for range rounds {
		st, err := e.app.svc.Track(ctx)
		if err != nil {
			return 0, nil, err
		}
		if st.Pending != n {
			return 0, nil, fmt.Errorf("cycle checked %d pending invitations, want %d", st.Pending, n)
		}
		took = append(took, st.Duration)
	}
	return float64(e.batchRequests()-before) / float64(rounds), took, nil
}

// batchRequests counts the JSON batches the tenant received.
func (e *emulated) batchRequests() int {
	n := 0
	for _, r := range e.tenant.Requests() {
		if strings.HasSuffix(r.Path, "/$batch") {
			n++
		}
	}
	return n
}

// trackLoadCmd is `invitebot load -track N`.
func trackLoadCmd(ctx context.Context, n, rounds int, stdout io.Writer) error {
	dir, err := os.MkdirTemp("", "invitebot-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e, err := startEmulated(filepath.Join(dir, "invitebot.db"), slog.New(slog.NewTextHandler(io.Discard, nil)),
		deps{pollInterval: -1, storeNoSync: true}, overHTTP)
	if err != nil {
		return err
	}
	defer e.Close()
	reqs, took, err := e.trackLoad(ctx, n, rounds)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d tracking cycles over %d pending invitations\n", rounds, n)
	fmt.Fprintf(stdout, "Graph requests per cycle: %.0f (JSON batches of %d)\n", reqs, flows.MaxStatesPerRequest)
	fmt.Fprintf(stdout, "cycle time:               %s\n", took)
	return nil
}

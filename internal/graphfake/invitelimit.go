package graphfake

import (
	"fmt"
	"math"
	"net/http"
	"time"
)

// SetInvitationLimit emulates Graph's invitation manager limit ("any
// operation on /invitations: 150 requests per 5 seconds, per tenant for all
// apps"): beyond n POSTs in any span of per, POST /invitations answers 429
// with the Retry-After until the oldest leaves the window. n <= 0 turns it
// off (the default).
func (t *Tenant) SetInvitationLimit(n int, per time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inviteLimit, t.inviteWindow, t.inviteTimes = n, per, nil
}

// InvitationsThrottled returns how many POST /invitations the limit refused.
func (t *Tenant) InvitationsThrottled() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inviteThrottled
}

// admitInvitation applies the limit; false means it wrote the 429.
func (t *Tenant) admitInvitation(w http.ResponseWriter, r *http.Request) bool {
	t.mu.Lock()
	if t.inviteLimit <= 0 {
		t.mu.Unlock()
		return true
	}
	now := time.Now()
	for len(t.inviteTimes) > 0 && now.Sub(t.inviteTimes[0]) >= t.inviteWindow {
		t.inviteTimes = t.inviteTimes[1:]
	}
	if len(t.inviteTimes) < t.inviteLimit {
		t.inviteTimes = append(t.inviteTimes, now)
		t.mu.Unlock()
		return true
	}
	t.inviteThrottled++
	wait := t.inviteWindow - now.Sub(t.inviteTimes[0])
	t.mu.Unlock()
	w.Header().Set("Retry-After", fmt.Sprintf("%.3f", math.Max(wait.Seconds(), 0.001)))
	graphError(w, r, http.StatusTooManyRequests, "TooManyRequests", "Too many requests to the invitation manager. Please retry again later.")
	return false
}

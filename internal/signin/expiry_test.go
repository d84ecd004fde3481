package signin_test

import (
	"net/http"
	"sync"
	"testing"
	"time"
)

// Ensure a refresh token past its inactivity lifetime on the token
// service's clock reaches the real MSAL client as invalid_grant
// AADSTS700082: the person must reconnect and their record is forgotten.
// One-minute access tokens make MSAL refresh at each use.
func TestRefreshTokenInactivity(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := newFixtureAt(t, time.Minute, clock)

	if _, code, body := f.connect(t, "U1", dana); code != http.StatusOK {
		t.Fatalf("connect: %d %s", code, body)
	}
	mu.Lock()
	now = now.Add(89 * 24 * time.Hour)
	mu.Unlock()
	if _, err := f.svc.Token(t.Context(), "U1"); err != nil {
		t.Fatalf("Token after 89 days: %v", err)
	}
	mu.Lock()
	now = now.Add(90*24*time.Hour + time.Second)
	mu.Unlock()
	_, err := f.svc.Token(t.Context(), "U1")
	wantExpired(t, err, "AADSTS700082", "Token after 90 days unused")
	f.wantDisconnected(t, "still connected after the refresh token expired")
	f.wantRefreshes(t, 1, 2)
}

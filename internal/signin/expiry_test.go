package signin_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
)

// Ensure a refresh token past its inactivity lifetime on the token
// service's clock reaches the real MSAL client as invalid_grant
// AADSTS700082: the person must reconnect and their record is forgotten.
// One-minute access tokens make MSAL refresh at each use.
func TestRefreshTokenInactivity(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f := &fixture{store: &recordingStore{}, log: &bytes.Buffer{}, now: time.Now(), key: bytes.Repeat([]byte{7}, 32)}
	var h http.Handler
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(web.Close)
	f.public = web.URL
	f.sts = graphfake.NewSTS(graphfake.STSConfig{TenantID: tenantID, ClientID: clientID, ClientSecret: secret,
		RedirectURIs: []string{web.URL + "/auth/callback"}, UserTokenLifetime: time.Minute, Now: clock})
	t.Cleanup(f.sts.Close)
	f.svc = f.service(t, f.key, nil)
	h = f.svc.Handler()

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
	var se *flows.SignInError
	if !errors.As(err, &se) || se.Reason != flows.SignInExpired || se.Code != "AADSTS700082" {
		t.Fatalf("Token after 90 days unused: %v; want a SignInError expired AADSTS700082", err)
	}
	if _, err := f.svc.Connection(t.Context(), "U1"); !errors.Is(err, flows.ErrSignInNeeded) {
		t.Errorf("still connected after the refresh token expired: %v", err)
	}
	if _, refreshes := f.sts.Grants(); refreshes != 1 || f.sts.RefreshRequests() != 2 {
		t.Errorf("refreshes: %d granted of %d asked; want 1 of 2", refreshes, f.sts.RefreshRequests())
	}
}

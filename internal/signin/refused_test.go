package signin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
)

// graphRig is a fixture whose token service and emulated Graph share a
// clock that the test moves, while MSAL keeps the process's clock: moving
// it past a delegated token's exp makes Graph refuse a token that MSAL's
// cache still holds for valid (clocks apart, or a token that ended early).
type graphRig struct {
	*fixture
	tenant *graphfake.Tenant
	graph  *graphfake.Server

	clk   sync.Mutex
	skew  time.Duration
	posts int // POST /invitations sent
}

func newGraphRig(t *testing.T, valid func(string) bool) *graphRig {
	t.Helper()
	g := &graphRig{}
	clock := func() time.Time { g.clk.Lock(); defer g.clk.Unlock(); return time.Now().Add(g.skew) }
	f := newFixtureAt(t, 0, clock) // one-hour tokens: MSAL uses its cached one
	if valid == nil {
		valid = f.sts.ValidToken
	}
	g.fixture = f
	g.tenant = graphfake.NewTenant(graphfake.TenantConfig{ID: tenantID, ValidToken: valid, Now: clock})
	g.tenant.AddUser(graphfake.User{ID: dana.ObjectID, DisplayName: dana.Name, Mail: dana.Username, UserPrincipalName: dana.Username, UserType: "Member"})
	g.graph = graphfake.NewServer(g.tenant)
	t.Cleanup(g.graph.Close)
	if _, code, body := f.connect(t, "U1", dana); code != http.StatusOK {
		t.Fatalf("connect: %d %s", code, body)
	}
	return g
}

// skewBy moves the token service's and Graph's clock, not MSAL's.
func (g *graphRig) skewBy(d time.Duration) {
	g.clk.Lock()
	defer g.clk.Unlock()
	g.skew += d
}

// invite returns the call that POSTs an invitation for email to the
// emulated Graph with the token it is given, and reports Graph's refusal
// as internal/graph does (a *flows.DirectoryError with Graph's status and
// error code). used collects the tokens it was called with.
func (g *graphRig) invite(t *testing.T, email string, used *[]string) func(context.Context, string) error {
	return func(ctx context.Context, tok string) error {
		g.clk.Lock()
		g.posts++
		*used = append(*used, tok)
		g.clk.Unlock()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.graph.URL+"/invitations",
			strings.NewReader(`{"invitedUserEmailAddress":"`+email+`","inviteRedirectUrl":"https://myapplications.microsoft.com"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return &flows.DirectoryError{Op: "invite", Err: err}
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusCreated {
			return nil
		}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("Graph's 401 has no WWW-Authenticate challenge")
		}
		return &flows.DirectoryError{Op: "invite", Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
}

func (g *graphRig) postCount() int {
	g.clk.Lock()
	defer g.clk.Unlock()
	return g.posts
}

// sentAs counts the invitations Graph took, all of which must be Dana's.
func (g *graphRig) sentAs(t *testing.T) int {
	t.Helper()
	for _, inv := range g.tenant.Invitations() {
		if inv.InvitedBy != dana.ObjectID {
			t.Errorf("invitation for %v sent by %q, want Dana", inv.Body["invitedUserEmailAddress"], inv.InvitedBy)
		}
	}
	return len(g.tenant.Invitations())
}

// Ensure a token that Graph refuses (401) although MSAL's cache holds it
// for valid is replaced with one refresh, and the call is made once more
// with the new token; the next call uses the new token as it is.
func TestDoRefreshesARefusedToken(t *testing.T) {
	g := newGraphRig(t, nil)
	var used []string
	if err := g.svc.Do(t.Context(), "U1", g.invite(t, "bob@fabrikam.com", &used)); err != nil {
		t.Fatalf("Do before the skew: %v", err)
	}
	g.skewBy(2 * time.Hour) // Graph: the cached one-hour token expired an hour ago; MSAL: it has 59 minutes left
	used = nil
	if err := g.svc.Do(t.Context(), "U1", g.invite(t, "carol@fabrikam.com", &used)); err != nil {
		t.Fatalf("Do with a refused token: %v", err)
	}
	if len(used) != 2 || used[0] == used[1] {
		t.Fatalf("calls = %d (distinct tokens: %v); want 2, the second with a new token", len(used), len(used) == 2 && used[0] != used[1])
	}
	g.wantRefreshes(t, 1, 1)
	used = nil
	if err := g.svc.Do(t.Context(), "U1", g.invite(t, "dave@fabrikam.com", &used)); err != nil || len(used) != 1 {
		t.Fatalf("Do after the refresh: %v, %d calls", err, len(used))
	}
	if g.sts.RefreshRequests() != 1 {
		t.Errorf("the refreshed token was not kept: %d refreshes", g.sts.RefreshRequests())
	}
	if n := g.sentAs(t); n != 3 || g.postCount() != 4 {
		t.Errorf("%d invitations from %d POSTs; want 3 from 4 (one refused)", n, g.postCount())
	}
	if codes, _ := g.sts.Grants(); codes != 1 {
		t.Errorf("%d sign-ins; want 1", codes)
	}
	if !strings.Contains(g.log.String(), "Graph refused the person's access token; refreshing it once") {
		t.Errorf("the refusal is not logged: %s", g.log.String())
	}
	for _, s := range g.sts.Secrets() {
		if strings.Contains(g.log.String(), s) {
			t.Errorf("the log holds a secret the STS issued")
		}
	}
}

// Ensure calls that Graph refuses at once for the same token share one
// refresh: the second finds the new token already in the cache.
func TestDoRefusedTokenConcurrent(t *testing.T) {
	g := newGraphRig(t, nil)
	g.skewBy(2 * time.Hour)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var used []string
			errs[i] = g.svc.Do(t.Context(), "U1", g.invite(t, string(rune('a'+i))+"@fabrikam.com", &used))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Do #%d: %v", i, err)
		}
	}
	g.wantRefreshes(t, 1, 1)
	if n := g.sentAs(t); n != 4 {
		t.Errorf("%d invitations; want 4", n)
	}
	if _, err := g.svc.Connection(t.Context(), "U1"); err != nil {
		t.Errorf("no longer connected: %v", err)
	}
}

// Ensure a refused token whose refresh token was revoked too asks the
// person to reconnect (nothing sent, the record forgotten), and after
// they do, the call works with no further refresh.
func TestDoRefusedTokenRevoked(t *testing.T) {
	g := newGraphRig(t, nil)
	g.skewBy(2 * time.Hour)
	g.sts.RevokeSignIns(dana.ObjectID)
	var used []string
	err := g.svc.Do(t.Context(), "U1", g.invite(t, "bob@fabrikam.com", &used))
	wantExpired(t, err, "AADSTS50173", "Do")
	if len(used) != 1 || g.sentAs(t) != 0 {
		t.Errorf("%d calls, %d invitations; want 1 call (refused), none sent", len(used), g.sentAs(t))
	}
	g.wantRefreshes(t, 0, 1)
	g.wantDisconnected(t, "still connected")
	if _, code, body := g.connect(t, "U1", dana); code != http.StatusOK {
		t.Fatalf("reconnect: %d %s", code, body)
	}
	used = nil
	if err := g.svc.Do(t.Context(), "U1", g.invite(t, "bob@fabrikam.com", &used)); err != nil || len(used) != 1 {
		t.Fatalf("Do after reconnecting: %v, %d calls", err, len(used))
	}
	if n := g.sentAs(t); n != 1 || g.sts.RefreshRequests() != 1 {
		t.Errorf("%d invitations, %d refreshes; want 1, 1", n, g.sts.RefreshRequests())
	}
}

// Ensure Graph refusing the refreshed token too makes the person
// reconnect (a SignInError with Graph's code, the record forgotten) after
// exactly two calls and one refresh: never a third call or a failure.
func TestDoRefusedTwice(t *testing.T) {
	g := newGraphRig(t, func(string) bool { return false }) // Graph accepts no token
	var used []string
	err := g.svc.Do(t.Context(), "U1", g.invite(t, "bob@fabrikam.com", &used))
	wantExpired(t, err, "InvalidAuthenticationToken", "Do")
	if len(used) != 2 || used[0] == used[1] {
		t.Errorf("calls = %d; want 2, the second with a new token", len(used))
	}
	g.wantRefreshes(t, 1, 1)
	g.wantDisconnected(t, "still connected after Graph refused a fresh token")
	if g.sentAs(t) != 0 {
		t.Error("an invitation was sent")
	}
}

// Ensure errors other than Graph's 401 are returned as they are, with no
// refresh and no second call: a 403 is the person's refusal.
func TestDoOtherErrors(t *testing.T) {
	g := newGraphRig(t, nil)
	g.tenant.SetAllowInvitesFrom(graphfake.InvitesFromAdminsAndGuestInviters)
	var used []string
	err := g.svc.Do(t.Context(), "U1", g.invite(t, "bob@fabrikam.com", &used))
	var de *flows.DirectoryError
	if !errors.As(err, &de) || de.Status != http.StatusForbidden || errors.Is(err, flows.ErrSignInNeeded) {
		t.Fatalf("Do: %v; want Graph's 403", err)
	}
	if len(used) != 1 || g.sts.RefreshRequests() != 0 {
		t.Errorf("%d calls, %d refreshes; want 1, 0", len(used), g.sts.RefreshRequests())
	}
	if _, err := g.svc.Connection(t.Context(), "U1"); err != nil {
		t.Errorf("a 403 disconnected the person: %v", err)
	}
}

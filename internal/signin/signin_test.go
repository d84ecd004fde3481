package signin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/signin"
)

const (
	tenantID = "11111111-1111-1111-1111-111111111111"
	clientID = "22222222-2222-2222-2222-222222222222"
	secret   = "client-s3cret"
	scope    = "https://graph.microsoft.com/User.Invite.All"
)

var (
	dana = graphfake.SignedInUser{ObjectID: "oid-dana", Username: "dana@contoso.com", Name: "Dana Smith"}
	eve  = graphfake.SignedInUser{ObjectID: "oid-eve", Username: "eve@contoso.com", Name: "Eve"}
)

type fixture struct {
	sts       *graphfake.STS
	svc       *signin.Service
	store     *recordingStore
	public    string
	log       *bytes.Buffer
	now       time.Time
	mu        sync.Mutex
	connected []string
	key       []byte
}

// recordingStore is the in-memory store, whose values a test can scan.
type recordingStore struct {
	flowstest.SignInStore
	mu    sync.Mutex
	puts  [][]byte
	locks flows.KeyLocks
}

// LockSignInRecord locks as the in-memory store does, writing through r.
func (r *recordingStore) LockSignInRecord(ctx context.Context, key string) (flows.SignInLock, error) {
	return flows.LockSignInRecordLocally(ctx, r, &r.locks, key)
}

func (r *recordingStore) PutSignInRecord(ctx context.Context, key string, v []byte, expires time.Time) error {
	r.mu.Lock()
	r.puts = append(r.puts, bytes.Clone(v))
	r.mu.Unlock()
	return r.SignInStore.PutSignInRecord(ctx, key, v, expires)
}

func newFixture(t *testing.T, lifetime time.Duration) *fixture {
	t.Helper()
	return newFixtureAt(t, lifetime, nil)
}

// newFixtureAt is newFixture with the token service on clock (nil: the
// wall clock); MSAL keeps the process's clock.
func newFixtureAt(t *testing.T, lifetime time.Duration, clock func() time.Time) *fixture {
	t.Helper()
	f := &fixture{store: &recordingStore{}, log: &bytes.Buffer{}, now: time.Now(), key: bytes.Repeat([]byte{7}, 32)}
	var h http.Handler
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(web.Close)
	f.public = web.URL
	f.sts = graphfake.NewSTS(graphfake.STSConfig{TenantID: tenantID, ClientID: clientID, ClientSecret: secret,
		RedirectURIs: []string{web.URL + "/auth/callback"}, UserTokenLifetime: lifetime, Now: clock})
	t.Cleanup(f.sts.Close)
	f.svc = f.service(t, f.key, nil)
	h = f.svc.Handler()
	return f
}

// wantExpired fails t unless err is a SignInError that asks the person
// to reconnect, with code.
func wantExpired(t *testing.T, err error, code, what string) {
	t.Helper()
	var se *flows.SignInError
	if !errors.As(err, &se) || se.Reason != flows.SignInExpired || se.Code != code {
		t.Fatalf("%s: %v; want a SignInError expired %s", what, err, code)
	}
}

// wantDisconnected checks that U1's sign-in was forgotten; complaint
// says why it should have been.
func (f *fixture) wantDisconnected(t *testing.T, complaint string) {
	t.Helper()
	if _, err := f.svc.Connection(t.Context(), "U1"); !errors.Is(err, flows.ErrSignInNeeded) {
		t.Errorf("%s: %v", complaint, err)
	}
}

// wantRefreshes checks the refresh grants the token service gave and the
// refresh requests it was asked.
func (f *fixture) wantRefreshes(t *testing.T, granted, asked int) {
	t.Helper()
	if _, refreshes := f.sts.Grants(); refreshes != granted || f.sts.RefreshRequests() != asked {
		t.Errorf("refreshes: %d granted of %d asked; want %d of %d", refreshes, f.sts.RefreshRequests(), granted, asked)
	}
}

func (f *fixture) service(t *testing.T, cur, prev []byte) *signin.Service {
	t.Helper()
	return f.serviceOn(t, f.store, cur, prev)
}

// serviceOn is service on another store (another replica's handle).
func (f *fixture) serviceOn(t *testing.T, store flows.SignInStore, cur, prev []byte) *signin.Service {
	t.Helper()
	sealer, err := signin.NewSealer(cur, prev)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := signin.New(signin.Config{TenantID: tenantID, ClientID: clientID, ClientSecret: secret,
		AuthorityHost: f.sts.URL, Scope: scope, PublicURL: f.public, Store: store, Sealer: sealer,
		Account: func(_ context.Context, u string) (string, error) {
			return map[string]string{"U1": dana.ObjectID, "U2": eve.ObjectID}[u], nil
		},
		Connected: func(_ context.Context, u string, _ flows.Connection) {
			f.mu.Lock()
			f.connected = append(f.connected, u)
			f.mu.Unlock()
		},
		HTTPClient: f.sts.Client(),
		Logger:     slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:        func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// browser is an HTTP client that keeps cookies and follows redirects, as
// a browser does, trusting the STS's certificate. hops records the URLs.
type browser struct {
	*http.Client
	hops []string
}

func newBrowser(f *fixture) *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{}
	b.Client = &http.Client{Jar: jar, Transport: f.sts.Client().Transport,
		CheckRedirect: func(r *http.Request, _ []*http.Request) error { b.hops = append(b.hops, r.URL.String()); return nil }}
	return b
}

func (b *browser) open(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (f *fixture) connect(t *testing.T, slackUser string, as graphfake.SignedInUser) (*browser, int, string) {
	t.Helper()
	link, err := f.svc.NewLink(t.Context(), slackUser)
	if err != nil {
		t.Fatal(err)
	}
	f.sts.SignIn(as)
	b := newBrowser(f)
	code, body := b.open(t, link)
	return b, code, body
}

func claims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	_ = json.Unmarshal(raw, &c)
	return c
}

// Ensure the real MSAL confidential client completes the code flow with
// PKCE against the STS, stores the tokens sealed, and refreshes them
// without a new sign-in; and no issued secret reaches the log or the
// store in clear.
func TestConnectAndRefresh(t *testing.T) {
	f := newFixture(t, time.Minute) // MSAL refreshes tokens that expire within 5 minutes
	b, code, body := f.connect(t, "U1", dana)
	if code != http.StatusOK || !strings.Contains(body, "Connected as Dana Smith (dana@contoso.com). You can close this tab.") {
		t.Fatalf("callback = %d %s", code, body)
	}
	if len(f.connected) != 1 || f.connected[0] != "U1" {
		t.Errorf("Connected calls = %v", f.connected)
	}
	az := f.sts.AuthorizeRequests()
	if len(az) != 1 {
		t.Fatalf("authorize requests = %d", len(az))
	}
	q := az[0].Query
	if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 ||
		q.Get("state") == "" || q.Get("scope") != "openid profile offline_access "+scope || q.Get("redirect_uri") != f.public+"/auth/callback" {
		t.Errorf("authorize query = %v", q)
	}
	c, err := f.svc.Connection(t.Context(), "U1")
	if err != nil || c.ObjectID != dana.ObjectID || c.TenantID != tenantID || c.Name != "Dana Smith" {
		t.Fatalf("Connection = %+v, %v", c, err)
	}
	for i := 1; i <= 2; i++ {
		tok, err := f.svc.Token(t.Context(), "U1")
		if err != nil {
			t.Fatalf("Token #%d: %v", i, err)
		}
		if !f.sts.ValidToken(tok) || claims(t, tok)["oid"] != dana.ObjectID || claims(t, tok)["scp"] != "User.Invite.All" {
			t.Fatalf("Token #%d claims = %v", i, claims(t, tok))
		}
	}
	if codes, refreshes := f.sts.Grants(); codes != 1 || refreshes != 2 {
		t.Errorf("grants: %d codes, %d refreshes; want 1, 2 (no new sign-in)", codes, refreshes)
	}
	// The callback URL cannot be replayed.
	cb := b.hops[len(b.hops)-1]
	if code, body := b.open(t, cb); code != http.StatusBadRequest || !strings.Contains(body, "state does not match") {
		t.Errorf("replayed callback = %d %s", code, body)
	}
	if _, err := f.svc.Token(t.Context(), "U2"); !errors.Is(err, flows.ErrSignInNeeded) {
		t.Errorf("Token for a person who never connected: %v", err)
	}
	for _, s := range f.sts.Secrets() {
		if strings.Contains(f.log.String(), s) {
			t.Errorf("the log holds a secret the STS issued")
		}
		for _, v := range f.store.puts {
			if bytes.Contains(v, []byte(s)) {
				t.Errorf("the store holds a secret the STS issued in clear")
			}
		}
	}
	if strings.Contains(f.log.String(), secret) {
		t.Error("the log holds the client secret")
	}
}

// Ensure a revoked refresh token asks for a new sign-in (and forgets the
// dead token), and reconnecting works again.
func TestRevokedRefreshToken(t *testing.T) {
	f := newFixture(t, time.Minute)
	if _, code, _ := f.connect(t, "U1", dana); code != http.StatusOK {
		t.Fatal(code)
	}
	f.sts.RevokeSignIns(dana.ObjectID)
	_, err := f.svc.Token(t.Context(), "U1")
	wantExpired(t, err, "AADSTS50173", "Token after revocation")
	f.wantDisconnected(t, "still connected after the refresh token was refused")
	if _, code, _ := f.connect(t, "U1", dana); code != http.StatusOK {
		t.Fatal(code)
	}
	if _, err := f.svc.Token(t.Context(), "U1"); err != nil {
		t.Fatalf("Token after reconnecting: %v", err)
	}
}

// Ensure only the person's own account in the tenant is connected, and
// every refused or odd sign-in links nothing and says why.
func TestCallbackRefusals(t *testing.T) {
	f := newFixture(t, time.Hour)
	tests := []struct {
		name   string
		run    func() (int, string)
		status int
		want   string
	}{
		{"AnotherPerson", func() (int, string) { _, c, b := f.connect(t, "U1", eve); return c, b }, 403, "That is not your account"},
		{"AnotherTenant", func() (int, string) {
			u := dana
			u.TenantID = "33333333-3333-3333-3333-333333333333"
			_, c, b := f.connect(t, "U1", u)
			return c, b
		}, 403, "another organisation"},
		{"Cancelled", func() (int, string) {
			link, _ := f.svc.NewLink(t.Context(), "U1")
			f.sts.RefuseSignIn("access_denied", "AADSTS65004: User declined to consent to access the app.")
			return newBrowser(f).open(t, link)
		}, 403, "You cancelled the sign-in"},
		{"NoConsent", func() (int, string) {
			link, _ := f.svc.NewLink(t.Context(), "U1")
			f.sts.RefuseSignIn("consent_required", "AADSTS65001: The user or administrator has not consented to use the application.")
			return newBrowser(f).open(t, link)
		}, 403, "Grant admin consent"},
		{"LinkUsedTwice", func() (int, string) {
			link, _ := f.svc.NewLink(t.Context(), "U1")
			f.sts.RefuseSignIn("access_denied", "AADSTS65004: declined")
			newBrowser(f).open(t, link)
			return newBrowser(f).open(t, link)
		}, 410, "used already"},
		{"LinkExpired", func() (int, string) {
			link, _ := f.svc.NewLink(t.Context(), "U1")
			f.mu.Lock()
			f.now = f.now.Add(signin.LinkTTL + time.Second)
			f.mu.Unlock()
			return newBrowser(f).open(t, link)
		}, 410, "expired"},
		{"ForgedState", func() (int, string) {
			return newBrowser(f).open(t, f.public+"/auth/callback?code=abc&state=forged")
		}, 400, "state does not match"},
		{"AnotherBrowser", func() (int, string) {
			link, _ := f.svc.NewLink(t.Context(), "U1")
			f.sts.SignIn(dana)
			a := newBrowser(f)
			a.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := a.Get(link)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// The authorize URL, opened in another browser (no cookie).
			return newBrowser(f).open(t, resp.Header.Get("Location"))
		}, 400, "another browser"},
		{"NoState", func() (int, string) { return newBrowser(f).open(t, f.public+"/auth/callback?code=abc") }, 400, "no state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := tt.run()
			if status != tt.status || !strings.Contains(body, tt.want) || !strings.Contains(body, "Nothing was connected") {
				t.Errorf("= %d %s; want %d with %q and \"Nothing was connected\"", status, body, tt.status, tt.want)
			}
			if _, err := f.svc.Connection(t.Context(), "U1"); !errors.Is(err, flows.ErrSignInNeeded) {
				t.Errorf("U1 connected after a refused sign-in")
			}
		})
	}
	if len(f.connected) != 0 {
		t.Errorf("Connected called: %v", f.connected)
	}
}

// Ensure a rotation keeps people connected: the previous key still opens
// their tokens, which are sealed again under the new key on use; a key
// that is not configured opens nothing.
func TestKeyRotation(t *testing.T) {
	f := newFixture(t, time.Minute)
	if _, code, _ := f.connect(t, "U1", dana); code != http.StatusOK {
		t.Fatal(code)
	}
	newKey := bytes.Repeat([]byte{9}, 32)
	rotating := f.service(t, newKey, f.key)
	if _, err := rotating.Token(t.Context(), "U1"); err != nil {
		t.Fatalf("Token during rotation: %v", err)
	}
	after := f.service(t, newKey, nil)
	if _, err := after.Token(t.Context(), "U1"); err != nil {
		t.Fatalf("Token with the new key only, after a use during rotation: %v", err)
	}
	wrong := f.service(t, bytes.Repeat([]byte{3}, 32), nil)
	if _, err := wrong.Connection(t.Context(), "U1"); !errors.Is(err, flows.ErrSignInNeeded) {
		t.Errorf("an unknown key opened the stored tokens: %v", err)
	}
}

// Ensure two people's tokens stay theirs.
func TestTokensPerPerson(t *testing.T) {
	f := newFixture(t, time.Hour)
	if _, code, _ := f.connect(t, "U1", dana); code != http.StatusOK {
		t.Fatal(code)
	}
	if _, code, _ := f.connect(t, "U2", eve); code != http.StatusOK {
		t.Fatal(code)
	}
	for u, oid := range map[string]string{"U1": dana.ObjectID, "U2": eve.ObjectID} {
		tok, err := f.svc.Token(t.Context(), u)
		if err != nil || claims(t, tok)["oid"] != oid {
			t.Errorf("Token(%s) = oid %v, %v; want %s", u, claims(t, tok)["oid"], err, oid)
		}
	}
	if ok, err := f.svc.Disconnect(t.Context(), "U1"); !ok || err != nil {
		t.Fatalf("Disconnect = %v, %v", ok, err)
	}
	if _, err := f.svc.Token(t.Context(), "U1"); !errors.Is(err, flows.ErrSignInNeeded) {
		t.Errorf("Token after disconnect: %v", err)
	}
	if _, err := f.svc.Token(t.Context(), "U2"); err != nil {
		t.Errorf("U2 lost their connection: %v", err)
	}
}

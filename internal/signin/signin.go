package signin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"

	"github.com/invitebot/invitebot/flows"
)

// Paths of the sign-in endpoints, under the public URL.
const (
	StartPath    = "/auth/start"
	CallbackPath = "/auth/callback"
)

// LinkTTL is how long a connect link and a sign-in in progress stay valid.
const LinkTTL = 10 * time.Minute

// Config configures a Service.
type Config struct {
	TenantID, ClientID  string
	ClientSecret        string // or CertificatePath
	CertificatePath     string // PEM or PFX with the private key
	CertificatePassword string
	// AuthorityHost is the token authority; "" is the public cloud. Any
	// other host also disables instance discovery.
	AuthorityHost string
	// Scope is the delegated Graph permission asked for, e.g.
	// https://graph.microsoft.com/User.Invite.All.
	Scope string
	// PublicURL is the base URL inviters' browsers reach invitebot at.
	PublicURL string
	Store     flows.SignInStore
	Sealer    *Sealer
	// Account returns the object ID of the Entra account the Slack user's
	// email maps to (the sponsor mapping): the only account they may
	// connect.
	Account func(ctx context.Context, slackUserID string) (string, error)
	// Connected is called after a person connected (tell flows and them).
	Connected func(ctx context.Context, slackUserID string, c flows.Connection)
	// HTTPClient carries the token service calls; nil: MSAL's default.
	HTTPClient *http.Client
	Logger     *slog.Logger     // nil: discard
	Now        func() time.Time // nil: time.Now
}

// Service connects people's Microsoft accounts and hands out their
// delegated tokens. It implements flows.Delegation's Connection; cmd pairs
// Token with the Graph client's InviteAs.
type Service struct {
	cfg       Config
	cred      confidential.Credential
	authority string
	discovery bool
	log       *slog.Logger
	now       func() time.Time
}

// New returns a Service. It does not call the token service.
func New(cfg Config) (*Service, error) {
	s := &Service{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.Store == nil || cfg.Sealer == nil || cfg.Account == nil {
		return nil, errors.New("signin: Store, Sealer and Account are required")
	}
	var err error
	switch {
	case cfg.ClientSecret != "":
		s.cred, err = confidential.NewCredFromSecret(cfg.ClientSecret)
	case cfg.CertificatePath != "":
		var data []byte
		if data, err = os.ReadFile(cfg.CertificatePath); err != nil {
			return nil, fmt.Errorf("AZURE_CLIENT_CERTIFICATE_PATH: %w", err)
		}
		certs, key, perr := azidentity.ParseCertificates(data, []byte(cfg.CertificatePassword))
		if perr != nil {
			return nil, fmt.Errorf("AZURE_CLIENT_CERTIFICATE_PATH: %w", perr)
		}
		s.cred, err = confidential.NewCredFromCert(certs, key)
	default:
		return nil, errors.New("signing in inviters needs AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH (a workload identity cannot redeem sign-in codes)")
	}
	if err != nil {
		return nil, fmt.Errorf("signin credential: %w", err)
	}
	host := strings.TrimSuffix(cfg.AuthorityHost, "/")
	if host == "" {
		host = "https://login.microsoftonline.com"
	}
	s.discovery = strings.Contains(host, "login.microsoftonline.com")
	s.authority = host + "/" + cfg.TenantID
	return s, nil
}

// RedirectURI is the redirect URI the app registration must list.
func (s *Service) RedirectURI() string {
	return strings.TrimSuffix(s.cfg.PublicURL, "/") + CallbackPath
}

// scopes are what the person is asked to grant.
func (s *Service) scopes() []string {
	return []string{"openid", "profile", "offline_access", s.cfg.Scope}
}

// client returns an MSAL client whose token cache is c: one person's
// cache, or an empty one. A client is never shared between people.
func (s *Service) client(c *personCache) (confidential.Client, error) {
	opts := []confidential.Option{confidential.WithCache(c), confidential.WithInstanceDiscovery(s.discovery)}
	if s.cfg.HTTPClient != nil {
		opts = append(opts, confidential.WithHTTPClient(s.cfg.HTTPClient))
	}
	return confidential.New(s.authority, s.cfg.ClientID, s.cred, opts...)
}

// personCache is MSAL's cache for one person's calls: it holds only that
// person's blob (or nothing), so no other person's tokens can be loaded.
type personCache struct {
	data    []byte
	changed bool
}

// Replace implements cache.ExportReplace. A miss loads an empty cache:
// never what an earlier call left in memory.
func (p *personCache) Replace(_ context.Context, u cache.Unmarshaler, _ cache.ReplaceHints) error {
	if p.data == nil {
		return u.Unmarshal([]byte("{}"))
	}
	return u.Unmarshal(p.data)
}

// Export implements cache.ExportReplace.
func (p *personCache) Export(_ context.Context, m cache.Marshaler, _ cache.ExportHints) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	p.data, p.changed = b, true
	return nil
}

// connection is a person's stored record, sealed for them.
type connection struct {
	flows.Connection
	HomeAccountID string `json:"homeAccountId"`
	Cache         []byte `json:"cache"` // MSAL's cache: their refresh token
}

func connKey(slackUserID string) string { return "conn/" + slackUserID }

// lock takes the lock of the person's record (the store's, so it holds
// across replicas): one refresh, connection or disconnection of a person
// at a time. Their refresh token rotates at each use, so two refreshes at
// once would redeem the same one and lose the new one. The record is read
// and written through the lock while it is held.
func (s *Service) lock(ctx context.Context, slackUserID string) (flows.SignInLock, error) {
	l, err := s.cfg.Store.LockSignInRecord(ctx, connKey(slackUserID))
	if err != nil {
		return nil, fmt.Errorf("lock sign-in: %w", err)
	}
	return l, nil
}

// load reads and opens the person's record with read; a missing or
// unreadable one is SignInNotConnected. stale reports it was sealed under
// the previous key.
func (s *Service) load(ctx context.Context, slackUserID string, read func(context.Context) ([]byte, error)) (c connection, stale bool, err error) {
	raw, err := read(ctx)
	if errors.Is(err, flows.ErrNotFound) {
		return c, false, &flows.SignInError{Reason: flows.SignInNotConnected}
	}
	if err != nil {
		return c, false, fmt.Errorf("read sign-in: %w", err)
	}
	plain, stale, err := s.cfg.Sealer.Open(connKey(slackUserID), raw)
	if err != nil {
		s.log.WarnContext(ctx, "stored sign-in cannot be opened with INVITEBOT_TOKEN_KEY or INVITEBOT_TOKEN_KEY_PREVIOUS; the person must reconnect", "slack_user", slackUserID)
		return c, false, &flows.SignInError{Reason: flows.SignInNotConnected}
	}
	if err := json.Unmarshal(plain, &c); err != nil {
		return c, false, &flows.SignInError{Reason: flows.SignInNotConnected}
	}
	return c, stale, nil
}

// save seals and stores the person's record, through their lock.
func (s *Service) save(ctx context.Context, l flows.SignInLock, slackUserID string, c connection) error {
	plain, err := json.Marshal(c)
	if err != nil {
		return err
	}
	// A connection never expires in the store: Microsoft decides when the
	// refresh token stops working.
	if err := l.Put(ctx, s.cfg.Sealer.Seal(connKey(slackUserID), plain), time.Time{}); err != nil {
		return fmt.Errorf("store sign-in: %w", err)
	}
	return nil
}

// Connection implements flows.Delegation.
func (s *Service) Connection(ctx context.Context, slackUserID string) (flows.Connection, error) {
	c, _, err := s.load(ctx, slackUserID, func(ctx context.Context) ([]byte, error) {
		return s.cfg.Store.SignInRecord(ctx, connKey(slackUserID))
	})
	return c.Connection, err
}

// Disconnect deletes the person's stored tokens. It reports whether they
// were connected.
func (s *Service) Disconnect(ctx context.Context, slackUserID string) (bool, error) {
	l, err := s.lock(ctx, slackUserID)
	if err != nil {
		return false, fmt.Errorf("disconnect: %w", err)
	}
	defer l.Unlock()
	_, _, err = s.load(ctx, slackUserID, l.Record)
	if derr := l.Delete(ctx); derr != nil {
		return false, fmt.Errorf("disconnect: %w", derr)
	}
	return err == nil, nil
}

// Token returns a delegated access token for the person, from their cache
// or by redeeming their refresh token (the new refresh token is sealed
// and stored). A *flows.SignInError means they must (re)connect; a refused
// refresh token is deleted, so they show as not connected.
func (s *Service) Token(ctx context.Context, slackUserID string) (string, error) {
	return s.token(ctx, slackUserID, "")
}

// token is Token. refused, if not "", is an access token Graph did not
// accept (401): it is dropped from the person's cache first, so that MSAL
// redeems the refresh token for a new one (MSAL for Go's confidential
// client has no forced refresh). If the cache holds another access token
// by then (a concurrent call has refreshed it), that one is returned, with
// no second refresh.
func (s *Service) token(ctx context.Context, slackUserID, refused string) (string, error) {
	l, err := s.lock(ctx, slackUserID)
	if err != nil {
		return "", err
	}
	defer l.Unlock()
	c, stale, err := s.load(ctx, slackUserID, l.Record)
	if err != nil {
		return "", err
	}
	if refused != "" {
		c.Cache, _ = dropAccessToken(c.Cache, refused)
	}
	pc := &personCache{data: c.Cache}
	cl, err := s.client(pc)
	if err != nil {
		return "", fmt.Errorf("sign-in client: %w", err)
	}
	acct, err := cl.Account(ctx, c.HomeAccountID)
	if err != nil || acct.HomeAccountID == "" {
		_ = l.Delete(ctx)
		return "", &flows.SignInError{Reason: flows.SignInNotConnected}
	}
	res, err := cl.AcquireTokenSilent(ctx, []string{s.cfg.Scope}, confidential.WithSilentAccount(acct))
	if err != nil {
		se := tokenError(err)
		if se.reconnect {
			s.log.InfoContext(ctx, "Microsoft refused the person's refresh token; they must reconnect", "slack_user", slackUserID, "code", se.code)
			_ = l.Delete(ctx)
			return "", &flows.SignInError{Reason: se.reason, Code: se.code}
		}
		return "", &flows.DirectoryError{Op: "sign-in token", Err: errors.New(se.String())}
	}
	if pc.changed || stale {
		c.Cache = pc.data
		if err := s.save(ctx, l, slackUserID, c); err != nil {
			return "", err
		}
	}
	return res.AccessToken, nil
}

// Do runs call with the person's delegated access token (as from Token).
// Graph answering 401 means it did not accept the token: it expired
// before MSAL's cache says it does (the clocks disagree), or it was
// revoked. Graph refuses such a request before acting on it, so calling
// once more is safe (for POST /invitations: no second invitation, no
// second Microsoft email): the refused token is dropped, a new one is
// redeemed with the refresh token, and call runs once more with it. A
// refresh Microsoft refuses is a *flows.SignInError, as from Token; so is
// a second 401 (reason expired, Graph's error code), after which the
// person's record is deleted: only a new sign-in can help. Any other error
// of call is returned as it is.
func (s *Service) Do(ctx context.Context, slackUserID string, call func(ctx context.Context, token string) error) error {
	tok, err := s.Token(ctx, slackUserID)
	if err != nil {
		return err
	}
	err = call(ctx, tok)
	if !tokenRefused(err) {
		return err
	}
	s.log.InfoContext(ctx, "Graph refused the person's access token; refreshing it once", "slack_user", slackUserID, "err", err)
	if tok, err = s.token(ctx, slackUserID, tok); err != nil {
		return err
	}
	err = call(ctx, tok)
	if !tokenRefused(err) {
		return err
	}
	s.log.WarnContext(ctx, "Graph refused the person's refreshed access token too; they must reconnect", "slack_user", slackUserID, "err", err)
	s.forget(ctx, slackUserID, tok)
	var de *flows.DirectoryError
	errors.As(err, &de)
	return &flows.SignInError{Reason: flows.SignInExpired, Code: de.Code}
}

// tokenRefused reports whether err is Graph's 401 to a delegated call.
// (CodeCredentialRejected is the token service refusing the app's own
// credential, never a delegated call's.)
func tokenRefused(err error) bool {
	var de *flows.DirectoryError
	return errors.As(err, &de) && de.Status == http.StatusUnauthorized && de.Code != flows.CodeCredentialRejected
}

// forget deletes the person's record if it still holds tok: not if they
// reconnected (or another call refreshed) meanwhile.
func (s *Service) forget(ctx context.Context, slackUserID, tok string) {
	l, err := s.lock(ctx, slackUserID)
	if err != nil {
		return
	}
	defer l.Unlock()
	c, _, err := s.load(ctx, slackUserID, l.Record)
	if err != nil {
		return
	}
	if _, held := dropAccessToken(c.Cache, tok); held {
		_ = l.Delete(ctx)
	}
}

// dropAccessToken removes the access token tok from an MSAL cache blob
// (the token cache format MSAL libraries share: "AccessToken" maps keys
// to entries whose "secret" is the token) and reports whether it was
// there. Everything else, the refresh token included, is kept as it is.
func dropAccessToken(blob []byte, tok string) ([]byte, bool) {
	var cache map[string]json.RawMessage
	var ats map[string]json.RawMessage
	if json.Unmarshal(blob, &cache) != nil || json.Unmarshal(cache["AccessToken"], &ats) != nil {
		return blob, false
	}
	held := false
	for k, raw := range ats {
		var at struct {
			Secret string `json:"secret"`
		}
		if json.Unmarshal(raw, &at) == nil && at.Secret == tok {
			delete(ats, k)
			held = true
		}
	}
	if !held {
		return blob, false
	}
	var err error
	if cache["AccessToken"], err = json.Marshal(ats); err != nil {
		return blob, false
	}
	out, err := json.Marshal(cache)
	if err != nil {
		return blob, false
	}
	return out, true
}

// aadError is the token service's error answer, without anything secret.
type aadError struct {
	status    int
	err       string // "invalid_grant"
	code      string // "AADSTS700082"
	reason    flows.SignInReason
	reconnect bool
}

func (e aadError) String() string {
	if e.status == 0 {
		return "token service unreachable"
	}
	return strings.TrimSpace(fmt.Sprintf("token service answered %d %s %s", e.status, e.err, e.code))
}

// The AADSTS codes after which only a new sign-in helps.
var (
	reconnectCodes = map[int]bool{70008: true, 700082: true, 50173: true, 70043: true, 50076: true, 50079: true, 53003: true,
		50078: true, 50158: true, 700084: true, 9002313: true}
	consentCodes = map[int]bool{65001: true, 90094: true, 90008: true}
	aadstsRE     = regexp.MustCompile(`AADSTS([0-9]+)`)
)

// tokenError reads MSAL's error: only the status, error and AADSTS code.
func tokenError(err error) aadError {
	var ce msalerrors.CallErr
	if !errors.As(err, &ce) || ce.Resp == nil {
		return aadError{}
	}
	out := aadError{status: ce.Resp.StatusCode}
	var body struct {
		Error      string `json:"error"`
		Desc       string `json:"error_description"`
		ErrorCodes []int  `json:"error_codes"`
	}
	if ce.Resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(ce.Resp.Body, 64<<10))
		_ = json.Unmarshal(b, &body)
	}
	out.err = body.Error
	codes := body.ErrorCodes
	if m := aadstsRE.FindStringSubmatch(body.Desc); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil {
			codes = append(codes, n)
		}
	}
	for _, n := range codes {
		switch {
		case consentCodes[n]:
			out.code, out.reason, out.reconnect = "AADSTS"+strconv.Itoa(n), flows.SignInConsent, true
		case reconnectCodes[n]:
			out.code, out.reason, out.reconnect = "AADSTS"+strconv.Itoa(n), flows.SignInExpired, true
		}
	}
	if !out.reconnect && (body.Error == "invalid_grant" || body.Error == "interaction_required") {
		out.reason, out.reconnect = flows.SignInExpired, true
		if len(codes) > 0 {
			out.code = "AADSTS" + strconv.Itoa(codes[0])
		}
	}
	return out
}

// random returns n random bytes, base64url-encoded.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashKey names a record after a secret without storing the secret.
func hashKey(prefix, secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return prefix + hex.EncodeToString(sum[:])
}

// challenge is PKCE's S256 code_challenge for verifier.
func challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

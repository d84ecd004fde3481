package graphfake

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// STSConfig configures the token service.
type STSConfig struct {
	TenantID, ClientID, ClientSecret string
	// Roles go into the token's "roles" claim; nil: every one invitebot uses.
	Roles []string
	// ObjectID is the app's service principal object ID, the token's oid
	// and sub; "" is DefaultServicePrincipal.
	ObjectID string
	// Wids, if set, returns the tenant-wide built-in roles assigned to the
	// service principal, for the token's wids claim (Tenant.TenantWideRoles;
	// see also SetWids).
	Wids func(oid string) []string
	// RedirectURIs are the app registration's Web redirect URIs; nil
	// accepts any.
	RedirectURIs []string
	// UserTokenLifetime is how long delegated access tokens last; zero: 1h.
	// MSAL refreshes a token that expires within 5 minutes, so a shorter
	// one is refreshed at every use.
	UserTokenLifetime time.Duration
	// RefreshTokenLifetime is how long a refresh token stays usable while
	// unused (Entra's inactivity lifetime; each refresh issues a new one);
	// zero: 90 days. Past it the refresh_token grant answers invalid_grant
	// AADSTS700082.
	RefreshTokenLifetime time.Duration
	// Now is the token service's clock: the iat, nbf and exp of the
	// delegated tokens it issues, and the expiry of authorization codes
	// and refresh tokens; nil: time.Now. Give the Tenant the same clock
	// (TenantConfig.Now): it refuses a delegated token past its exp.
	// App-only tokens keep the process's clock.
	Now func() time.Time
}

// DefaultServicePrincipal is the emulated app's service principal object ID.
const DefaultServicePrincipal = "33333333-4444-5555-6666-777777777777"

// STS is a TLS token service with the endpoints azidentity (MSAL) calls
// for client credentials when instance discovery is disabled:
// GET /{tenant}/v2.0/.well-known/openid-configuration and
// POST /{tenant}/oauth2/v2.0/token; and for a person's sign-in (the
// authorization code flow with PKCE): GET /{tenant}/oauth2/v2.0/authorize
// and the authorization_code and refresh_token grants. Client credentials
// also get tokens for Azure Database for PostgreSQL (ResourceOSSRDBMS);
// their tokens are signed with the key GET /{tenant}/discovery/v2.0/keys
// publishes.
type STS struct {
	URL string // https://127.0.0.1:PORT
	cfg STSConfig
	srv *httptest.Server

	mu       sync.Mutex
	tokens   map[string]bool
	requests int

	signedIn                 *SignedInUser
	refuse                   *[2]string
	codes                    map[string]*authorization
	refresh                  map[string]*refreshGrant
	authorizeLog             []AuthorizeRequest
	codesRedeemed, refreshed int
	refreshRequests          int
	issued                   []string

	resourceLife time.Duration // the lifetime of tokens for other resources than Graph; zero: 1h
}

// NewSTS starts a token service.
func NewSTS(cfg STSConfig) *STS {
	if cfg.Roles == nil {
		cfg.Roles = []string{"User.Invite.All", "User.Read.All", "GroupMember.ReadWrite.All", "Organization.Read.All", "User.ReadWrite.All"}
	}
	if cfg.ObjectID == "" {
		cfg.ObjectID = DefaultServicePrincipal
	}
	s := &STS{cfg: cfg, tokens: map[string]bool{}, codes: map[string]*authorization{}, refresh: map[string]*refreshGrant{}}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

func (s *STS) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

// SetWids sets STSConfig.Wids (a tenant made after the STS).
func (s *STS) SetWids(f func(oid string) []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Wids = f
}

// Client returns an HTTP client that trusts the STS's certificate.
func (s *STS) Client() *http.Client { return s.srv.Client() }

// Close stops the STS.
func (s *STS) Close() { s.srv.Close() }

// ValidToken reports whether tok was issued by this STS.
func (s *STS) ValidToken(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[tok]
}

// TokenRequests returns how many tokens were requested.
func (s *STS) TokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func aadError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc, "error_codes": []int{7000215},
		"timestamp": time.Now().UTC().Format(time.DateTime), "trace_id": newGUID(), "correlation_id": newGUID()})
}

func (s *STS) serve(w http.ResponseWriter, r *http.Request) {
	tenant := s.cfg.TenantID
	switch r.URL.Path {
	case "/" + tenant + "/v2.0/.well-known/openid-configuration":
		base := s.URL + "/" + tenant
		writeJSON(w, http.StatusOK, map[string]any{
			"token_endpoint":         base + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"issuer":                 base + "/v2.0",
			"jwks_uri":               base + "/discovery/v2.0/keys",
			"tenant_region_scope":    "EU",
		})
	case "/" + tenant + "/oauth2/v2.0/token":
		s.token(w, r)
	case "/" + tenant + "/oauth2/v2.0/authorize":
		s.authorize(w, r)
	case "/" + tenant + "/discovery/v2.0/keys":
		keys(w)
	default:
		aadError(w, http.StatusBadRequest, "invalid_tenant", "AADSTS90002: Tenant not found.")
	}
}

func (s *STS) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	if err := r.ParseForm(); err != nil {
		aadError(w, http.StatusBadRequest, "invalid_request", "AADSTS900144: malformed request")
		return
	}
	f := r.PostForm
	switch {
	case f.Get("client_id") != s.cfg.ClientID:
		aadError(w, http.StatusBadRequest, "unauthorized_client", "AADSTS700016: Application not found in the directory.")
		return
	case f.Get("client_secret") != s.cfg.ClientSecret:
		aadError(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	case f.Get("grant_type") == "authorization_code":
		s.authCode(w, f)
		return
	case f.Get("grant_type") == "refresh_token":
		s.refreshToken(w, f)
		return
	case f.Get("grant_type") != "client_credentials":
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", "AADSTS70003: unsupported grant type")
		return
	case !slices.Contains(strings.Fields(f.Get("scope")), "https://graph.microsoft.com/.default"):
		if r, ok := resourceOf(f.Get("scope")); ok {
			s.resourceToken(w, r)
		} else if r != "" {
			aadError(w, http.StatusBadRequest, "invalid_resource", "AADSTS500011: The resource principal named "+r+
				" was not found in the tenant named "+s.cfg.TenantID+".")
		} else {
			aadError(w, http.StatusBadRequest, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid.")
		}
		return
	}
	now := time.Now()
	c := map[string]any{"aud": "https://graph.microsoft.com", "iss": s.URL + "/" + s.cfg.TenantID + "/v2.0",
		"tid": s.cfg.TenantID, "appid": s.cfg.ClientID, "roles": s.cfg.Roles, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"jti": newGUID(), "oid": s.cfg.ObjectID, "sub": s.cfg.ObjectID, "idtyp": "app"}
	s.mu.Lock()
	wids := s.cfg.Wids
	s.mu.Unlock()
	if wids != nil {
		if w := wids(s.cfg.ObjectID); len(w) > 0 {
			c["wids"] = w
		}
	}
	tok := sign(c)
	s.mu.Lock()
	s.tokens[tok] = true
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})
}

package graphfake

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// SignedInUser is who signs in at the token service's authorize endpoint:
// the browser's session with Microsoft.
type SignedInUser struct {
	ObjectID string // oid: the user's Entra object ID
	TenantID string // tid; "" is the STS's own tenant
	Username string // preferred_username (the UPN)
	Name     string // name
}

// delegatedScope is the one delegated Graph permission the emulated app
// registration has (with admin consent).
const delegatedScope = "User.Invite.All"

// authorization is an issued authorization code.
type authorization struct {
	user               SignedInUser
	clientID, redirect string
	challenge, method  string
	scopes             []string
	expires            time.Time
	graphResource      string
}

// refreshGrant is an issued refresh token.
type refreshGrant struct {
	user            SignedInUser
	graphResource   string
	revoked         string    // the AADSTS error it now answers with, if revoked
	issued, expires time.Time // by the STS's clock; expires: issued + the inactivity lifetime
}

// AuthorizeRequest is an authorize request the STS received, as the
// browser sent it.
type AuthorizeRequest struct {
	Query url.Values
}

// SignIn sets who signs in at the next authorize requests (until changed),
// as a browser session with Microsoft would.
func (s *STS) SignIn(u SignedInUser) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signedIn, s.refuse = &u, nil
}

// RefuseSignIn makes the next authorize request redirect back with an
// error (e.g. "access_denied" when the person cancels, or
// "consent_required" with AADSTS65001 in desc) instead of a code.
func (s *STS) RefuseSignIn(code, desc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = &[2]string{code, desc}
}

// RevokeSignIns revokes every refresh token of the user (oid), as "Revoke
// sessions" in Entra does: refreshing answers invalid_grant AADSTS50173.
// Access tokens already issued stay valid until they expire.
func (s *STS) RevokeSignIns(oid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.refresh {
		if g.user.ObjectID == oid {
			g.revoked = "AADSTS50173: The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password."
		}
	}
}

// AuthorizeRequests returns the authorize requests received, oldest first.
func (s *STS) AuthorizeRequests() []AuthorizeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.authorizeLog)
}

// Grants returns how many authorization codes were redeemed and refresh
// tokens used, successfully.
func (s *STS) Grants() (codes, refreshes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.codesRedeemed, s.refreshed
}

// RefreshRequests returns how many refresh_token grants the STS received,
// whatever it answered.
func (s *STS) RefreshRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refreshRequests
}

// Secrets returns every secret value the STS has issued (access, refresh
// and id tokens, authorization codes), for tests that check none leaks.
func (s *STS) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.issued)
}

func (s *STS) issue(v string) string {
	s.issued = append(s.issued, v)
	return v
}

// authorize serves GET /{tenant}/oauth2/v2.0/authorize: it "signs in" the
// session's user and redirects back to redirect_uri with a code and the
// state, or with an error. A redirect_uri the app does not list, or an
// unknown client, is an error page, as Entra shows one (no redirect).
func (s *STS) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	s.authorizeLog = append(s.authorizeLog, AuthorizeRequest{Query: q})
	user, refuse := s.signedIn, s.refuse
	s.refuse = nil
	s.mu.Unlock()
	redirect := q.Get("redirect_uri")
	switch {
	case q.Get("client_id") != s.cfg.ClientID:
		errorPage(w, "AADSTS700016: Application with identifier '"+q.Get("client_id")+"' was not found in the directory.")
		return
	case redirect == "" || (s.cfg.RedirectURIs != nil && !slices.Contains(s.cfg.RedirectURIs, redirect)):
		errorPage(w, "AADSTS50011: The redirect URI '"+redirect+"' specified in the request does not match the redirect URIs configured for the application.")
		return
	}
	back := func(v url.Values) {
		if st := q.Get("state"); st != "" {
			v.Set("state", st)
		}
		u, _ := url.Parse(redirect)
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	fail := func(code, desc string) { back(url.Values{"error": {code}, "error_description": {desc}}) }
	scopes := strings.Fields(q.Get("scope"))
	graph := graphResource(scopes)
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "AADSTS70005: response_type 'token' is not enabled for the application.")
	case q.Get("code_challenge") != "" && q.Get("code_challenge_method") != "S256" && q.Get("code_challenge_method") != "plain":
		fail("invalid_request", "AADSTS501491: Invalid size of Code_Challenge parameter.")
	case graph == "":
		fail("invalid_scope", "AADSTS70011: The provided request must include a 'scope' input parameter with a Graph permission.")
	case refuse != nil:
		fail(refuse[0], refuse[1])
	case user == nil:
		fail("access_denied", "AADSTS50058: A silent sign-in request was sent but no user is signed in.")
	default:
		code := s.issue("0.A" + strings.ReplaceAll(newGUID()+newGUID(), "-", ""))
		s.mu.Lock()
		s.codes[code] = &authorization{user: *user, clientID: q.Get("client_id"), redirect: redirect,
			challenge: q.Get("code_challenge"), method: q.Get("code_challenge_method"), scopes: scopes,
			expires: s.now().Add(10 * time.Minute), graphResource: graph}
		s.mu.Unlock()
		back(url.Values{"code": {code}, "session_state": {newGUID()}})
	}
}

// graphResource returns the Graph host of the delegated scope
// ("https://graph.microsoft.com" for https://graph.microsoft.com/User.Invite.All), or "".
func graphResource(scopes []string) string {
	for _, sc := range scopes {
		if res, perm, ok := strings.Cut(strings.TrimPrefix(sc, "https://"), "/"); ok && perm == delegatedScope {
			return "https://" + res
		}
	}
	return ""
}

func errorPage(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, "<html><body><h1>Sorry, but we're having trouble signing you in.</h1><p>%s</p></body></html>", html.EscapeString(msg))
}

// grantError answers a token request with AAD's error JSON and code.
func grantError(w http.ResponseWriter, code, desc string) {
	n := 0
	if c, _, ok := strings.Cut(strings.TrimPrefix(desc, "AADSTS"), ":"); ok {
		_, _ = fmt.Sscan(c, &n)
	}
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": code, "error_description": desc, "error_codes": []int{n},
		"timestamp": time.Now().UTC().Format(time.DateTime), "trace_id": newGUID(), "correlation_id": newGUID()})
}

// authCode redeems an authorization code: once, with the redirect_uri it
// was issued for and, if the authorize request carried a PKCE challenge,
// the matching code_verifier.
func (s *STS) authCode(w http.ResponseWriter, f url.Values) {
	s.mu.Lock()
	a := s.codes[f.Get("code")]
	delete(s.codes, f.Get("code")) // single use, whatever happens next
	s.mu.Unlock()
	verifier := f.Get("code_verifier")
	switch {
	case a == nil || s.now().After(a.expires):
		grantError(w, "invalid_grant", "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.")
	case a.clientID != f.Get("client_id"):
		grantError(w, "invalid_grant", "AADSTS70000: The provided value for the 'code' parameter is not valid.")
	case a.redirect != f.Get("redirect_uri"):
		grantError(w, "invalid_grant", "AADSTS50148: The redirect_uri in the token request does not match the one in the authorization request.")
	case a.challenge != "" && !pkceOK(a.challenge, a.method, verifier):
		grantError(w, "invalid_grant", "AADSTS501481: The Code_Verifier does not match the code_challenge supplied in the authorization request.")
	case a.challenge == "" && verifier != "":
		grantError(w, "invalid_grant", "AADSTS50148: The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.")
	default:
		s.mu.Lock()
		s.codesRedeemed++
		s.mu.Unlock()
		s.userTokens(w, a.user, a.graphResource, strings.Contains(" "+strings.Join(a.scopes, " ")+" ", " offline_access "))
	}
}

func pkceOK(challenge, method, verifier string) bool {
	if method == "plain" {
		return verifier == challenge
	}
	sum := sha256.Sum256([]byte(verifier))
	return verifier != "" && base64.RawURLEncoding.EncodeToString(sum[:]) == challenge
}

// refreshToken redeems a refresh token for a new access token and a new
// refresh token (the old one is no longer accepted: rotation). One unused
// past its inactivity lifetime answers AADSTS700082, as Entra does.
func (s *STS) refreshToken(w http.ResponseWriter, f url.Values) {
	now := s.now()
	s.mu.Lock()
	g := s.refresh[f.Get("refresh_token")]
	s.refreshRequests++
	var refusal string
	switch {
	case g == nil:
		refusal = "AADSTS9002313: Invalid request. Request is malformed or invalid."
	case g.revoked != "":
		refusal = g.revoked
	case !now.Before(g.expires):
		refusal = fmt.Sprintf("AADSTS700082: The refresh token has expired due to inactivity. The token was issued on %s and was inactive for %s.",
			g.issued.UTC().Format("2006-01-02T15:04:05.0000000Z"), timeSpan(g.expires.Sub(g.issued)))
	default:
		// Redeemed in the same critical section as it is checked: of two
		// requests with one refresh token, only the first gets tokens.
		delete(s.refresh, f.Get("refresh_token"))
		s.refreshed++
	}
	s.mu.Unlock()
	if refusal != "" {
		grantError(w, "invalid_grant", refusal)
		return
	}
	s.userTokens(w, g.user, g.graphResource, true)
}

// userTokens answers a user grant: a delegated access token for Graph, an
// id_token, client_info (MSAL's home account) and, with offline_access, a
// refresh token.
func (s *STS) userTokens(w http.ResponseWriter, u SignedInUser, graph string, offline bool) {
	tid := u.TenantID
	if tid == "" {
		tid = s.cfg.TenantID
	}
	life := s.cfg.UserTokenLifetime
	if life <= 0 {
		life = time.Hour
	}
	rtLife := s.cfg.RefreshTokenLifetime
	if rtLife <= 0 {
		rtLife = 90 * 24 * time.Hour
	}
	now := s.now()
	iss := s.URL + "/" + tid + "/v2.0"
	at := s.issue(jwt(map[string]any{"aud": graph, "iss": iss, "tid": tid, "oid": u.ObjectID, "appid": s.cfg.ClientID,
		"scp": delegatedScope, "name": u.Name, "upn": u.Username, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(), "jti": newGUID()}))
	id := s.issue(jwt(map[string]any{"aud": s.cfg.ClientID, "iss": iss, "tid": tid, "oid": u.ObjectID, "sub": "pw-" + u.ObjectID,
		"preferred_username": u.Username, "name": u.Name, "ver": "2.0", "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}))
	ci, _ := json.Marshal(map[string]string{"uid": u.ObjectID, "utid": tid})
	resp := map[string]any{"token_type": "Bearer", "scope": graph + "/" + delegatedScope + " openid profile",
		"expires_in": int(life.Seconds()), "ext_expires_in": int(life.Seconds()), "access_token": at, "id_token": id,
		"client_info": base64.RawURLEncoding.EncodeToString(ci)}
	s.mu.Lock()
	s.tokens[at] = true
	if offline {
		rt := s.issue("1.A" + strings.ReplaceAll(newGUID()+newGUID()+newGUID(), "-", ""))
		s.refresh[rt] = &refreshGrant{user: u, graphResource: graph, issued: now, expires: now.Add(rtLife)}
		resp["refresh_token"] = rt
		resp["scope"] = resp["scope"].(string) + " offline_access"
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

// timeSpan formats d as .NET's TimeSpan ("90.00:00:00"), as AADSTS
// messages show durations.
func timeSpan(d time.Duration) string {
	d = d.Round(time.Second)
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h, m, sec := d/time.Hour, (d%time.Hour)/time.Minute, (d%time.Minute)/time.Second
	if days > 0 {
		return fmt.Sprintf("%d.%02d:%02d:%02d", days, h, m, sec)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
}

// jwt encodes claims as an unsigned JWT (the emulators trust each other).
func jwt(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"typ":"JWT","alg":"none"}`)) + "." + enc(b) + "." + enc([]byte(strings.Repeat("s", 16)))
}

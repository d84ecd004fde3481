package signin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/invitebot/invitebot/flows"
)

// cookieName binds a sign-in to the browser that started it.
const cookieName = "invitebot_signin"

// link is a connect link's record (keyed by the link's hash).
type link struct {
	SlackUser string    `json:"slackUser"`
	Expires   time.Time `json:"expires"`
}

// flow is a sign-in in progress (keyed by the state's hash, sealed).
type flow struct {
	SlackUser string    `json:"slackUser"`
	Verifier  string    `json:"verifier"` // PKCE code_verifier
	Browser   string    `json:"browser"`  // hash of the cookie's value
	Expires   time.Time `json:"expires"`
}

// NewLink returns a fresh connect link for the Slack user: single use,
// valid for LinkTTL. It is a credential for starting a sign-in only; the
// account signed in must still be the person's own.
func (s *Service) NewLink(ctx context.Context, slackUserID string) (string, error) {
	nonce := random(24)
	expires := s.now().Add(LinkTTL)
	rec, _ := json.Marshal(link{SlackUser: slackUserID, Expires: expires})
	if err := s.cfg.Store.PutSignInRecord(ctx, hashKey("link/", nonce), rec, expires); err != nil {
		return "", fmt.Errorf("connect link: %w", err)
	}
	return strings.TrimSuffix(s.cfg.PublicURL, "/") + StartPath + "?l=" + nonce, nil
}

// Handler serves StartPath and CallbackPath.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+StartPath, s.start)
	mux.HandleFunc("GET "+CallbackPath, s.callback)
	return mux
}

// start redeems a connect link: it records a sign-in (state, PKCE
// verifier, browser cookie) and redirects to Microsoft's authorize
// endpoint.
func (s *Service) start(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	nonce := r.URL.Query().Get("l")
	var l link
	raw, err := s.cfg.Store.TakeSignInRecord(ctx, hashKey("link/", nonce))
	if err == nil {
		err = json.Unmarshal(raw, &l)
	}
	switch {
	case nonce == "" || errors.Is(err, flows.ErrNotFound):
		page(w, http.StatusGone, "This link does not work", "It was used already, or it is not one invitebot made. Nothing was connected. "+freshLink)
		return
	case err != nil:
		s.log.ErrorContext(ctx, "read connect link", "err", err)
		page(w, http.StatusInternalServerError, "Something went wrong", "Nothing was connected. Try again in a moment. "+freshLink)
		return
	case s.now().After(l.Expires):
		page(w, http.StatusGone, "This link has expired", "Connect links last 10 minutes. Nothing was connected. "+freshLink)
		return
	}
	state, verifier, browser := random(32), random(32), random(32)
	expires := s.now().Add(LinkTTL)
	sealedFlow, _ := json.Marshal(flow{SlackUser: l.SlackUser, Verifier: verifier, Browser: hashKey("", browser), Expires: expires})
	key := hashKey("flow/", state)
	if err := s.cfg.Store.PutSignInRecord(ctx, key, s.cfg.Sealer.Seal(key, sealedFlow), expires); err != nil {
		s.log.ErrorContext(ctx, "record sign-in", "err", err)
		page(w, http.StatusInternalServerError, "Something went wrong", "Nothing was connected. "+freshLink)
		return
	}
	cl, err := s.client(&personCache{})
	var authURL string
	if err == nil {
		authURL, err = cl.AuthCodeURL(ctx, s.cfg.ClientID, s.RedirectURI(), s.scopes())
	}
	var u *url.URL
	if err == nil {
		u, err = url.Parse(authURL)
	}
	if err != nil {
		s.log.ErrorContext(ctx, "authorize URL", "err", err)
		page(w, http.StatusBadGateway, "Microsoft cannot be reached", "invitebot could not reach the Microsoft sign-in service. Nothing was connected. "+freshLink)
		return
	}
	// MSAL's confidential client cannot add state or PKCE: add them here.
	q := u.Query()
	q.Set("state", state)
	q.Set("code_challenge", challenge(verifier))
	q.Set("code_challenge_method", "S256")
	q.Set("response_mode", "query")
	q.Set("prompt", "select_account")
	u.RawQuery = q.Encode()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: browser, Path: "/auth/", MaxAge: int(LinkTTL.Seconds()),
		HttpOnly: true, Secure: strings.HasPrefix(s.cfg.PublicURL, "https://"), SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

const freshLink = "For a fresh link, run /invite-guest connect in Slack."

// Callback is what Microsoft's redirect carries.
type Callback struct {
	Code, State      string
	Error, ErrorDesc string
}

// ParseCallback reads the redirect's query. Each parameter must appear at
// most once; a code and an error together, or neither, are refused.
func ParseCallback(rawQuery string) (Callback, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Callback{}, errors.New("malformed query")
	}
	for _, k := range []string{"code", "state", "error", "error_description"} {
		if len(q[k]) > 1 {
			return Callback{}, fmt.Errorf("%s given more than once", k)
		}
	}
	c := Callback{Code: q.Get("code"), State: q.Get("state"), Error: q.Get("error"), ErrorDesc: q.Get("error_description")}
	switch {
	case c.State == "":
		return Callback{}, errors.New("no state")
	case c.Code == "" && c.Error == "":
		return Callback{}, errors.New("neither a code nor an error")
	case c.Code != "" && c.Error != "":
		return Callback{}, errors.New("both a code and an error")
	case len(c.Code) > 4096 || len(c.State) > 256 || len(c.Error) > 256 || len(c.ErrorDesc) > 4096:
		return Callback{}, errors.New("parameter too long")
	}
	return c, nil
}

// callback finishes a sign-in: the state must be one invitebot issued,
// unused and unexpired, in the browser that started it; the code is
// redeemed with the PKCE verifier; the account must be in the tenant and
// be the person's own. Only then are the tokens stored.
func (s *Service) callback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	cb, err := ParseCallback(r.URL.RawQuery)
	if err != nil {
		page(w, http.StatusBadRequest, "This sign-in cannot be finished", "The address is not a sign-in invitebot started ("+err.Error()+"). Nothing was connected. "+freshLink)
		return
	}
	key := hashKey("flow/", cb.State)
	raw, err := s.cfg.Store.TakeSignInRecord(ctx, key)
	var f flow
	if err == nil {
		var plain []byte
		if plain, _, err = s.cfg.Sealer.Open(key, raw); err == nil {
			err = json.Unmarshal(plain, &f)
		}
	}
	cookie, _ := r.Cookie(cookieName)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/auth/", MaxAge: -1})
	switch {
	case err != nil:
		page(w, http.StatusBadRequest, "This sign-in cannot be finished", "The state does not match a sign-in in progress: it was finished already, or it did not start here. Nothing was connected. "+freshLink)
		return
	case s.now().After(f.Expires):
		page(w, http.StatusGone, "This sign-in has expired", "Sign-ins must be finished within 10 minutes. Nothing was connected. "+freshLink)
		return
	case cookie == nil || hashKey("", cookie.Value) != f.Browser:
		page(w, http.StatusBadRequest, "This sign-in cannot be finished", "It was started in another browser (state mismatch). Nothing was connected. "+freshLink)
		return
	case cb.Error != "":
		status, title, text := signInRefused(cb)
		s.log.InfoContext(ctx, "sign-in refused", "slack_user", f.SlackUser, "error", cb.Error, "code", aadstsRE.FindString(cb.ErrorDesc))
		page(w, status, title, text)
		return
	}
	pc := &personCache{}
	cl, err := s.client(pc)
	if err != nil {
		page(w, http.StatusInternalServerError, "Something went wrong", "Nothing was connected. "+freshLink)
		return
	}
	res, err := cl.AcquireTokenByAuthCode(ctx, cb.Code, s.RedirectURI(), []string{s.cfg.Scope}, confidential.WithChallenge(f.Verifier))
	if err != nil {
		e := tokenError(err)
		s.log.WarnContext(ctx, "sign-in code not redeemed", "slack_user", f.SlackUser, "answer", e.String())
		if e.reason == flows.SignInConsent {
			page(w, http.StatusForbidden, "An administrator must grant consent", consentHelp)
			return
		}
		page(w, http.StatusBadGateway, "Microsoft did not finish the sign-in", "Microsoft's token service refused the sign-in ("+e.String()+"). Nothing was connected. "+freshLink)
		return
	}
	id := res.IDToken
	conn := flows.Connection{ObjectID: id.Oid, TenantID: id.TenantID, Username: id.PreferredUsername, Name: id.Name, ConnectedAt: s.now()}
	if conn.TenantID != s.cfg.TenantID {
		s.log.InfoContext(ctx, "sign-in from another tenant refused", "slack_user", f.SlackUser, "tid", conn.TenantID)
		page(w, http.StatusForbidden, "That account belongs to another organisation",
			fmt.Sprintf("You signed in as %s, which is not an account of this organisation's Microsoft Entra tenant (personal Microsoft accounts are not accepted either). Nothing was connected. Sign in with your work account. %s", conn.Username, freshLink))
		return
	}
	want, err := s.cfg.Account(ctx, f.SlackUser)
	switch {
	case err != nil || want == "":
		s.log.InfoContext(ctx, "sign-in refused: no Entra account for the Slack user", "slack_user", f.SlackUser, "err", err)
		page(w, http.StatusForbidden, "Your Slack account does not map to a Microsoft account",
			"invitebot connects the Microsoft account whose email is your Slack profile's email, and found none. Nothing was connected. Ask an admin to check your Slack email.")
		return
	case want != conn.ObjectID:
		s.log.InfoContext(ctx, "sign-in refused: another person's account", "slack_user", f.SlackUser, "oid", conn.ObjectID, "expected_oid", want)
		page(w, http.StatusForbidden, "That is not your account",
			fmt.Sprintf("You signed in as %s, but your Slack account belongs to another Microsoft account. Only your own account can be connected. Nothing was connected. %s", conn.Username, freshLink))
		return
	}
	rec := connection{Connection: conn, HomeAccountID: res.Account.HomeAccountID, Cache: pc.data}
	l, err := s.lock(ctx, f.SlackUser)
	if err == nil {
		err = s.save(ctx, l, f.SlackUser, rec)
		l.Unlock()
	}
	if err != nil {
		s.log.ErrorContext(ctx, "store sign-in", "slack_user", f.SlackUser, "err", err)
		page(w, http.StatusInternalServerError, "Something went wrong", "Your sign-in could not be saved. Nothing was connected. "+freshLink)
		return
	}
	s.log.InfoContext(ctx, "Microsoft account connected", "slack_user", f.SlackUser, "oid", conn.ObjectID)
	if s.cfg.Connected != nil {
		s.cfg.Connected(context.WithoutCancel(ctx), f.SlackUser, conn)
	}
	page(w, http.StatusOK, "Connected", fmt.Sprintf("Connected as %s (%s). You can close this tab.", conn.Name, conn.Username))
}

const consentHelp = "This app's delegated Microsoft Graph permission User.Invite.All has no admin consent yet, so Microsoft will not let you grant it. Nothing was connected. " +
	"An administrator grants it once for everyone: Microsoft Entra admin center → App registrations → invitebot → API permissions → Grant admin consent for the organisation. Then run /invite-guest connect again."

// signInRefused words an error redirect from the authorize endpoint.
func signInRefused(cb Callback) (int, string, string) {
	code := aadstsRE.FindString(cb.ErrorDesc)
	switch {
	case strings.Contains(cb.ErrorDesc, "AADSTS65001") || strings.Contains(cb.ErrorDesc, "AADSTS90094") || cb.Error == "consent_required":
		return http.StatusForbidden, "An administrator must grant consent", consentHelp
	case cb.Error == "access_denied":
		return http.StatusForbidden, "Sign-in cancelled", "You cancelled the sign-in or declined the permission. Nothing was connected. " + freshLink
	}
	what := cb.Error
	if code != "" {
		what += ", " + code
	}
	return http.StatusBadRequest, "Microsoft did not sign you in", "Microsoft answered " + what + ". Nothing was connected. " + freshLink
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="referrer" content="no-referrer"><title>invitebot: {{.Title}}</title></head>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto"><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// page writes a small HTML page (escaped by html/template).
func page(w http.ResponseWriter, status int, title, text string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, struct{ Title, Text string }{title, text})
}

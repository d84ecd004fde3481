// Package graphfake is an in-memory Microsoft Entra tenant served over HTTP
// with Microsoft Graph v1.0's request and response shapes, Graph-shaped
// error bodies and switchable failure modes (throttling with Retry-After,
// 5xx, latency, 404 until replicated, "already a member"), JSON batching
// (POST /$batch, with per-item faults and Retry-After), plus a TLS token
// service (STS) so the real azidentity credential runs against it. It uses
// only the standard library; tests and `invitebot demo` use it.
package graphfake

import (
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// User is a directory user.
type User struct {
	ID                              string    `json:"id"`
	DisplayName                     string    `json:"displayName,omitempty"`
	Mail                            string    `json:"mail,omitempty"`
	UserPrincipalName               string    `json:"userPrincipalName,omitempty"`
	UserType                        string    `json:"userType,omitempty"`
	GivenName                       string    `json:"givenName,omitempty"`
	Surname                         string    `json:"surname,omitempty"`
	CompanyName                     string    `json:"companyName,omitempty"`
	JobTitle                        string    `json:"jobTitle,omitempty"`
	ExternalUserState               string    `json:"externalUserState,omitempty"`
	ExternalUserStateChangeDateTime time.Time `json:"externalUserStateChangeDateTime,omitzero"`
	CreationType                    string    `json:"creationType,omitempty"`
	OtherMails                      []string  `json:"otherMails,omitempty"`
	ProxyAddresses                  []string  `json:"proxyAddresses,omitempty"`
	OnPremisesUserPrincipalName     string    `json:"onPremisesUserPrincipalName,omitempty"`
	AccountEnabled                  bool      `json:"accountEnabled"`
}

// Invitation is a POST /invitations the tenant accepted.
type Invitation struct {
	Body   map[string]any // the request body as received
	UserID string
	// InvitedBy is the object ID of the person who sent it with a
	// delegated token; "" when the app sent it with its own.
	InvitedBy string
}

// Request is a request the tenant received.
type Request struct {
	Method, Path, RawQuery string
	Status                 int
	Authorization          bool // an Authorization: Bearer header was present and valid
	// Items is, for POST /$batch, how many sub-requests the batch carried
	// (its items are in BatchItems, not in Requests); 0 otherwise.
	Items int
	// BatchID is, for a batch item (see BatchItems), the item's id.
	BatchID string
	// Caller is the object ID of the person a delegated token acts for;
	// "" for the app's own token.
	Caller string
}

// TenantConfig configures a Tenant.
type TenantConfig struct {
	ID              string   // default a fixed GUID
	VerifiedDomains []string // default {"contoso.com"}
	// ValidToken checks bearer tokens; nil accepts any non-empty one. A
	// request without Authorization is always 401.
	ValidToken func(string) bool
	// UnverifiedDomains are listed by GET /domains with isVerified false.
	UnverifiedDomains []string
	// Now is the tenant's clock (dynamic administrative unit membership);
	// nil: time.Now.
	Now func() time.Time
}

// Tenant is the in-memory tenant. It is safe for concurrent use.
type Tenant struct {
	cfg TenantConfig

	mu          sync.Mutex
	users       []*User                   // insertion order; nil: deleted (compacted lazily)
	deleted     int                       // nil entries in users
	pos         map[string]int            // user id → index in users
	byID        map[string]*User          // user id → user
	byUPN       map[string]*User          // lower-cased userPrincipalName → user
	byMail      map[string]*User          // lower-cased mail and otherMails → user (the last added)
	groups      map[string]string         // id → name
	groupKinds  map[string]GroupKind      // SetGroupKind; absent: a plain security group
	members     map[string]map[string]int // group id → user id → insertion sequence
	memberSeq   int
	invitations []Invitation
	requests    []Request
	batchItems  []Request
	faults      map[Route]*fault
	latency     map[Route]time.Duration
	replication int                 // invisible reads for a new user
	hidden      map[string]int      // user id → remaining invisible reads
	sponsors    map[string][]string // user id → sponsor ids

	roleDefs    []RoleDefinition      // custom roles (built-ins: builtInRoles)
	units       map[string]*adminUnit // administrative units by id
	assignments []RoleAssignment
	created     map[string]time.Time // user id → created by an invitation, by t.now

	inviteLimit     int // SetInvitationLimit
	inviteWindow    time.Duration
	inviteTimes     []time.Time
	inviteThrottled int

	chaos          map[Route]*chaos     // SetChaos
	throttledUntil map[string]time.Time // "METHOD path" → end of its last chaos 429's Retry-After
	chaosStats     ChaosStats

	allowInvitesFrom string              // SetAllowInvitesFrom; "" is everyone
	roles            map[string][]string // AssignRole: user id → directory roles
}

// NewTenant returns an empty tenant.
func NewTenant(cfg TenantConfig) *Tenant {
	if cfg.ID == "" {
		cfg.ID = "9188040d-6c67-4c5b-b112-36a304b66dad"
	}
	if len(cfg.VerifiedDomains) == 0 {
		cfg.VerifiedDomains = []string{"contoso.com"}
	}
	return &Tenant{cfg: cfg, groups: map[string]string{}, members: map[string]map[string]int{},
		pos: map[string]int{}, byID: map[string]*User{}, byUPN: map[string]*User{}, byMail: map[string]*User{},
		faults: map[Route]*fault{}, latency: map[Route]time.Duration{}, hidden: map[string]int{},
		units: map[string]*adminUnit{}, created: map[string]time.Time{}}
}

func (t *Tenant) now() time.Time {
	if t.cfg.Now != nil {
		return t.cfg.Now()
	}
	return time.Now()
}

// ID returns the tenant ID.
func (t *Tenant) ID() string { return t.cfg.ID }

// Server is a Tenant served over HTTP.
type Server struct {
	URL string // base URL including /v1.0
	srv *httptest.Server
}

// NewServer serves t on a loopback port.
func NewServer(t *Tenant) *Server {
	srv := httptest.NewServer(t)
	return &Server{URL: srv.URL + "/v1.0", srv: srv}
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// AddUser adds a user (an ID is assigned if empty) and returns it. A user
// with an existing ID replaces that user in place. It is O(1).
func (t *Tenant) AddUser(u User) User {
	t.mu.Lock()
	defer t.mu.Unlock()
	if u.ID == "" {
		u.ID = newGUID()
	}
	c := u
	t.insert(&c)
	return c
}

// insert adds u, or overwrites the user with u.ID, and indexes it. t.mu held.
func (t *Tenant) insert(u *User) *User {
	if old := t.byID[u.ID]; old != nil {
		t.unindex(old)
		*old = *u
		t.index(old)
		return old
	}
	t.pos[u.ID] = len(t.users)
	t.users = append(t.users, u)
	t.byID[u.ID] = u
	t.index(u)
	return u
}

// remove deletes the user and its group memberships. t.mu held.
func (t *Tenant) remove(u *User) {
	t.unindex(u)
	delete(t.byID, u.ID)
	delete(t.hidden, u.ID)
	for _, m := range t.members {
		delete(m, u.ID)
	}
	t.users[t.pos[u.ID]] = nil
	delete(t.pos, u.ID)
	t.deleted++
	if t.deleted > 64 && t.deleted > len(t.users)/2 { // compact
		live := t.users[:0]
		for _, x := range t.users {
			if x != nil {
				t.pos[x.ID] = len(live)
				live = append(live, x)
			}
		}
		clear(t.users[len(live):])
		t.users, t.deleted = live, 0
	}
}

func (t *Tenant) index(u *User) {
	if u.UserPrincipalName != "" {
		t.byUPN[strings.ToLower(u.UserPrincipalName)] = u
	}
	for _, m := range append([]string{u.Mail}, u.OtherMails...) {
		if m != "" {
			t.byMail[strings.ToLower(m)] = u
		}
	}
}

func (t *Tenant) unindex(u *User) {
	if k := strings.ToLower(u.UserPrincipalName); t.byUPN[k] == u {
		delete(t.byUPN, k)
	}
	for _, m := range append([]string{u.Mail}, u.OtherMails...) {
		if k := strings.ToLower(m); t.byMail[k] == u {
			delete(t.byMail, k)
		}
	}
}

// lookup finds a user by object ID or (case-insensitively) by
// userPrincipalName, as GET /users/{id | userPrincipalName} does. t.mu held.
func (t *Tenant) lookup(idOrUPN string) *User {
	if u := t.byID[idOrUPN]; u != nil {
		return u
	}
	if strings.Contains(idOrUPN, "@") {
		return t.byUPN[strings.ToLower(idOrUPN)]
	}
	return nil
}

// AddGroup adds a group and returns its ID.
func (t *Tenant) AddGroup(name string) string {
	id := newGUID()
	t.AddGroupWithID(id, name)
	return id
}

// GroupKind is what GET /groups/{id} says about a group beyond its name:
// the properties that decide whether an app may add members.
type GroupKind struct {
	GroupTypes            []string `json:"groupTypes"` // "Unified", "DynamicMembership"
	MailEnabled           bool     `json:"mailEnabled"`
	SecurityEnabled       bool     `json:"securityEnabled"`
	OnPremisesSyncEnabled bool     `json:"onPremisesSyncEnabled,omitempty"`
	IsAssignableToRole    bool     `json:"isAssignableToRole"`
}

// SetGroupKind sets a group's kind (default: a cloud security group).
func (t *Tenant) SetGroupKind(id string, k GroupKind) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.groupKinds == nil {
		t.groupKinds = map[string]GroupKind{}
	}
	t.groupKinds[id] = k
}

// AddGroupWithID adds a group with a given ID.
func (t *Tenant) AddGroupWithID(id, name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.groups[id] = name
}

// User returns a user by ID.
func (t *Tenant) User(id string) (User, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if u := t.user(id); u != nil {
		return *u, true
	}
	return User{}, false
}

// Users returns every user.
func (t *Tenant) Users() []User {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]User, 0, len(t.users)-t.deleted)
	for _, u := range t.users {
		if u != nil {
			out = append(out, *u)
		}
	}
	return out
}

// GroupMembers returns a group's member IDs, in the order they were added.
func (t *Tenant) GroupMembers(gid string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.members[gid]
	out := make([]string, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b string) int { return m[a] - m[b] })
	if len(out) == 0 {
		return nil
	}
	return out
}

// Invitations returns the accepted invitations, in order.
func (t *Tenant) Invitations() []Invitation {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Invitation(nil), t.invitations...)
}

// Requests returns every HTTP request received, in order. A JSON batch is
// one request (Path "/v1.0/$batch", Items > 0); see BatchItems.
func (t *Tenant) Requests() []Request {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Request(nil), t.requests...)
}

// BatchItems returns the sub-requests of every JSON batch, in the order
// they were executed, with their own status and BatchID.
func (t *Tenant) BatchItems() []Request {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Request(nil), t.batchItems...)
}

// SetUserState sets a user's externalUserState ("" is null).
func (t *Tenant) SetUserState(id, state string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if u := t.user(id); u != nil {
		u.ExternalUserState, u.ExternalUserStateChangeDateTime = state, time.Now().UTC()
	}
}

// Redeem marks the user's invitation as redeemed: externalUserState
// Accepted, changed now.
func (t *Tenant) Redeem(id string) {
	t.SetUserState(id, "Accepted")
}

// DeleteUser removes a user and its group memberships, as DELETE
// /users/{id} does; false if there is no such user.
func (t *Tenant) DeleteUser(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.byID[id]
	if u != nil {
		t.remove(u)
	}
	return u != nil
}

func (t *Tenant) user(id string) *User { return t.byID[id] }

// graphError writes Graph's error JSON; never an empty body.
func graphError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code": code, "message": msg,
		"innerError": map[string]any{"date": time.Now().UTC().Format(time.RFC3339), "request-id": w.Header().Get("request-id"),
			"client-request-id": r.Header.Get("client-request-id")},
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter, r *http.Request, id string) {
	graphError(w, r, http.StatusNotFound, "Request_ResourceNotFound",
		fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", id))
}

// statusRecorder captures the status for the request log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	items  int // a JSON batch's sub-requests
	// log records the request in the tenant's log, once. A dropped
	// connection records it before the client can see the drop.
	log func()
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the connection (chaos resets).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ServeHTTP implements http.Handler for the /v1.0 routes.
func (t *Tenant) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	rec.Header().Set("request-id", newGUID())
	auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	ok := auth != "" && auth != r.Header.Get("Authorization") && (t.cfg.ValidToken == nil || t.cfg.ValidToken(auth))
	c := callerOf(r)
	r = withCaller(r, parseClaims(auth))
	var once sync.Once
	rec.log = func() {
		once.Do(func() {
			t.mu.Lock()
			t.requests = append(t.requests, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Status: rec.status,
				Authorization: ok, Items: rec.items, Caller: c.oid})
			t.mu.Unlock()
		})
	}
	defer rec.log()
	if !ok {
		rec.Header().Set("WWW-Authenticate", graphChallenge)
		graphError(rec, r, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty or invalid.")
		return
	}
	if msg := c.lifetimeError(t.now()); msg != "" {
		rec.Header().Set("WWW-Authenticate", graphChallenge)
		graphError(rec, r, http.StatusUnauthorized, "InvalidAuthenticationToken", msg)
		return
	}
	if r.Header.Get("Content-Encoding") == "gzip" { // kiota compresses request bodies
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			graphError(rec, r, http.StatusBadRequest, "BadRequest", "Invalid gzip body.")
			return
		}
		r.Body = zr
	}
	route, args := match(r.Method, strings.TrimPrefix(r.URL.Path, "/v1.0"))
	if c.delegated && route != RoutePostInvitations {
		t.admitCaller(rec, r, route, c, false) // refused: User.Invite.All reaches nothing else
		return
	}
	switch route {
	case "":
		graphError(rec, r, http.StatusNotFound, "BadRequest", "Resource not found for the segment '"+r.URL.Path+"'.")
	case RouteBatch:
		rec.items = t.batch(rec, r)
	default:
		t.serve(rec, r, route, args, true)
	}
}

// serve answers one (top-level or batch item) request on route: latency
// (if wait), chaos, injected faults, then the handler.
func (t *Tenant) serve(w http.ResponseWriter, r *http.Request, route Route, args []string, wait bool) {
	if wait && !t.delay(r, route) {
		return
	}
	if t.applyChaos(w, r, route, !wait, func(w http.ResponseWriter) { t.dispatch(w, r, route, args) }) {
		return
	}
	f := t.takeFault(route)
	if f != nil && !f.AfterEffect {
		f.write(w, r)
		return
	}
	if f != nil { // the side effect happens, the answer is lost
		t.dispatch(httptest.NewRecorder(), r, route, args)
		f.write(w, r)
		return
	}
	t.dispatch(w, r, route, args)
}

func (t *Tenant) dispatch(w http.ResponseWriter, r *http.Request, route Route, args []string) {
	target := "" // the object the call acts on: a user, or a group for members
	if len(args) > 0 {
		target = args[0]
	}
	if route != RoutePatchUser && !t.authorized(r, route, target, nil) {
		denied(w, r)
		return
	}
	switch route {
	case RouteGetOrganization:
		t.organization(w)
	case RouteListDomains:
		t.domains(w)
	case RouteListRoleAssigned:
		t.listRoleAssignments(w, r)
	case RouteListUsers:
		t.listUsers(w, r)
	case RouteGetUser:
		t.getUser(w, r, args[0])
	case RoutePatchUser:
		t.patchUser(w, r, args[0])
	case RouteDeleteUser:
		t.deleteUser(w, r, args[0])
	case RoutePostInvitations:
		t.invite(w, r)
	case RouteAddMember:
		t.addMember(w, r, args[0])
	case RouteRemoveMember:
		t.removeMember(w, r, args[0], args[1])
	case RouteAddSponsor:
		t.addSponsor(w, r, args[0])
	case RouteGetGroup:
		t.getGroup(w, r, args[0])
	}
}

// Route names a Graph endpoint for failure injection.
type Route string

// The emulated routes. A fault on RouteBatch fails a whole JSON batch; a
// fault on another route also fails the matching items inside batches
// (each item gets the fault's status and Retry-After in the batch answer).
const (
	RouteGetOrganization Route = "GET /organization"
	RouteListUsers       Route = "GET /users"
	RouteGetUser         Route = "GET /users/{id}"
	RoutePatchUser       Route = "PATCH /users/{id}"
	RouteDeleteUser      Route = "DELETE /users/{id}"
	RoutePostInvitations Route = "POST /invitations"
	RouteAddMember       Route = "POST /groups/{id}/members/$ref"
	RouteRemoveMember    Route = "DELETE /groups/{id}/members/{id}/$ref"
	RouteBatch           Route = "POST /$batch"
	RouteAddSponsor      Route = "POST /users/{id}/sponsors/$ref"
	RouteGetGroup        Route = "GET /groups/{id}"
	RouteListDomains     Route = "GET /domains"
	// RouteListRoleAssigned is GET /roleManagement/directory/roleAssignments.
	RouteListRoleAssigned Route = "GET /roleManagement/directory/roleAssignments"
)

func match(method, path string) (Route, []string) {
	seg := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case method == "GET" && path == "/organization":
		return RouteGetOrganization, nil
	case method == "GET" && path == "/domains":
		return RouteListDomains, nil
	case method == "GET" && path == "/roleManagement/directory/roleAssignments":
		return RouteListRoleAssigned, nil
	case method == "GET" && len(seg) == 2 && seg[0] == "groups" && seg[1] != "":
		return RouteGetGroup, seg[1:]
	case method == "GET" && path == "/users":
		return RouteListUsers, nil
	case method == "POST" && path == "/$batch":
		return RouteBatch, nil
	case len(seg) == 2 && seg[0] == "users" && seg[1] != "" && method == "GET":
		return RouteGetUser, seg[1:]
	case len(seg) == 2 && seg[0] == "users" && seg[1] != "" && method == "PATCH":
		return RoutePatchUser, seg[1:]
	case len(seg) == 2 && seg[0] == "users" && seg[1] != "" && method == "DELETE":
		return RouteDeleteUser, seg[1:]
	case method == "POST" && len(seg) == 4 && seg[0] == "users" && seg[2] == "sponsors" && seg[3] == "$ref":
		return RouteAddSponsor, []string{seg[1]}
	case method == "POST" && path == "/invitations":
		return RoutePostInvitations, nil
	case method == "POST" && len(seg) == 4 && seg[0] == "groups" && seg[2] == "members" && seg[3] == "$ref":
		return RouteAddMember, []string{seg[1]}
	case method == "DELETE" && len(seg) == 5 && seg[0] == "groups" && seg[2] == "members" && seg[4] == "$ref":
		return RouteRemoveMember, []string{seg[1], seg[3]}
	}
	return "", nil
}

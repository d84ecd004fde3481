package graphfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"
)

func (t *Tenant) organization(w http.ResponseWriter) {
	var domains []map[string]any
	for i, d := range t.cfg.VerifiedDomains {
		domains = append(domains, map[string]any{"name": d, "isDefault": i == 0, "isInitial": false, "type": "Managed",
			"capabilities": "Email, OfficeCommunicationsOnline"})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#organization",
		"value":          []any{map[string]any{"id": t.cfg.ID, "displayName": "Contoso", "verifiedDomains": domains}},
	})
}

func (t *Tenant) listUsers(w http.ResponseWriter, r *http.Request) {
	filter := r.URL.Query().Get("$filter")
	clauses, err := ParseFilter(filter)
	if err != nil {
		graphError(w, r, http.StatusBadRequest, "Request_UnsupportedQuery", "Invalid filter clause: "+err.Error())
		return
	}
	sel, err := parseSelect(r.URL.Query().Get("$select"))
	if err != nil {
		graphError(w, r, http.StatusBadRequest, "Request_BadRequest", err.Error())
		return
	}
	t.mu.Lock()
	out := []any{}
	for _, u := range t.users {
		if u == nil || t.hidden[u.ID] > 0 {
			continue // deleted, or not yet replicated to the query index
		}
		if len(clauses) == 0 || slices.ContainsFunc(clauses, func(c Clause) bool { return c.Match(u) }) {
			out = append(out, project(*u, sel))
		}
	}
	t.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users", "value": out})
}

// userProps maps each User JSON property, lower-cased, to its name.
var userProps = func() map[string]string {
	m := map[string]string{}
	rt := reflect.TypeFor[User]()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		m[strings.ToLower(name)] = name
	}
	return m
}()

// parseSelect returns the $select property names (nil: none), or Graph's
// error message for an unknown property.
func parseSelect(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		name, ok := userProps[strings.ToLower(strings.TrimSpace(p))]
		if !ok {
			return nil, selectError(strings.TrimSpace(p))
		}
		out = append(out, name)
	}
	return out, nil
}

// selectError is Graph's message for an unknown $select property.
type selectError string

func (e selectError) Error() string {
	return "Could not find a property named '" + string(e) + "' on type 'microsoft.graph.user'."
}

// project returns u as Graph renders it: every property without $select,
// else id plus the selected properties, with an explicit null (or [] for a
// collection) for each selected property that is empty.
func project(u User, sel []string) any {
	if sel == nil {
		return u
	}
	raw, _ := json.Marshal(u)
	var all map[string]any
	_ = json.Unmarshal(raw, &all)
	out := map[string]any{"id": u.ID}
	for _, p := range sel {
		v, ok := all[p]
		switch {
		case ok:
			out[p] = v
		case p == "otherMails" || p == "proxyAddresses":
			out[p] = []string{}
		default:
			out[p] = nil
		}
	}
	return out
}

// visible reports whether the user with the object ID or userPrincipalName
// can be read, counting down replication.
func (t *Tenant) visible(idOrUPN string) (*User, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.lookup(idOrUPN)
	if u == nil {
		return nil, false
	}
	if t.hidden[u.ID] > 0 {
		t.hidden[u.ID]--
		return nil, false
	}
	return u, true
}

func (t *Tenant) getUser(w http.ResponseWriter, r *http.Request, id string) {
	sel, err := parseSelect(r.URL.Query().Get("$select"))
	if err != nil {
		graphError(w, r, http.StatusBadRequest, "Request_BadRequest", err.Error())
		return
	}
	u, ok := t.visible(id)
	if !ok {
		notFound(w, r, id)
		return
	}
	t.mu.Lock()
	c := *u
	t.mu.Unlock()
	if sel == nil {
		writeJSON(w, http.StatusOK, c)
		return
	}
	out := project(c, sel).(map[string]any)
	out["@odata.context"] = "https://graph.microsoft.com/v1.0/$metadata#users(" + strings.Join(sel, ",") + ")/$entity"
	writeJSON(w, http.StatusOK, out)
}

func (t *Tenant) deleteUser(w http.ResponseWriter, r *http.Request, id string) {
	u, ok := t.visible(id)
	if !ok {
		notFound(w, r, id)
		return
	}
	t.mu.Lock()
	if t.byID[u.ID] == u { // not deleted meanwhile
		t.remove(u)
	}
	t.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (t *Tenant) patchUser(w http.ResponseWriter, r *http.Request, id string) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		graphError(w, r, http.StatusBadRequest, "BadRequest", "Unable to read JSON request payload.")
		return
	}
	u, ok := t.visible(id)
	if !ok {
		notFound(w, r, id)
		return
	}
	var actions []string
	for k := range body {
		if a := patchActions[k]; a != "" {
			actions = append(actions, a)
		}
	}
	if !t.authorized(r, RoutePatchUser, u.ID, actions) {
		denied(w, r)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, v := range body {
		s, _ := v.(string)
		switch k {
		case "givenName":
			u.GivenName = s
		case "surname":
			u.Surname = s
		case "companyName":
			u.CompanyName = s
		case "jobTitle":
			u.JobTitle = s
		case "displayName":
			u.DisplayName = s
		case "accountEnabled":
			b, ok := v.(bool)
			if !ok {
				graphError(w, r, http.StatusBadRequest, "Request_BadRequest", "Invalid value for property 'accountEnabled'.")
				return
			}
			u.AccountEnabled = b
		case "@odata.type":
		default:
			graphError(w, r, http.StatusBadRequest, "Request_BadRequest", "Invalid property '"+k+"'.")
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// forbiddenEmailChars are the characters Graph documents as not permitted.
const forbiddenEmailChars = "~!#$%^&*()+=[]{}\\/|;:\"<>?,"

func (t *Tenant) invite(w http.ResponseWriter, r *http.Request) {
	if !t.admitInvitation(w, r) {
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		graphError(w, r, http.StatusBadRequest, "BadRequest", "Unable to read JSON request payload.")
		return
	}
	email, _ := body["invitedUserEmailAddress"].(string)
	redirect, _ := body["inviteRedirectUrl"].(string)
	at := strings.LastIndexByte(email, '@')
	switch {
	case email == "":
		graphError(w, r, http.StatusBadRequest, "BadRequest", "The invitedUserEmailAddress property is required.")
		return
	case redirect == "":
		graphError(w, r, http.StatusBadRequest, "BadRequest", "The inviteRedirectUrl property is required.")
		return
	case at <= 0 || strings.ContainsAny(email[:at], forbiddenEmailChars):
		graphError(w, r, http.StatusBadRequest, "BadRequest", "The invited user email address is invalid.")
		return
	}
	if info, ok := body["invitedUserMessageInfo"].(map[string]any); ok {
		if cc, _ := info["ccRecipients"].([]any); len(cc) > 1 {
			graphError(w, r, http.StatusBadRequest, "BadRequest", "Currently only 1 additional recipient is supported.")
			return
		}
	}
	var existingID string
	if iu, ok := body["invitedUser"].(map[string]any); ok {
		existingID, _ = iu["id"].(string)
	}
	reset, _ := body["resetRedemption"].(bool)
	if reset && existingID == "" {
		graphError(w, r, http.StatusBadRequest, "BadRequest", "The invitedUser id is required when resetRedemption is true.")
		return
	}
	domain := strings.ToLower(email[at+1:])
	if existingID == "" && slices.Contains(t.cfg.VerifiedDomains, domain) {
		graphError(w, r, http.StatusBadRequest, "BadRequest", "The invited user already exists in the directory as a member of this organization.")
		return
	}
	userType, _ := body["invitedUserType"].(string)
	if userType == "" {
		userType = "Guest"
	}
	c := callerOf(r)
	if !t.admitCaller(w, r, RoutePostInvitations, c, userType == "Member") {
		return
	}
	name, _ := body["invitedUserDisplayName"].(string)
	var u *User
	if existingID != "" { // convert an internal user, or reset redemption
		var ok bool
		if u, ok = t.visible(existingID); !ok {
			notFound(w, r, existingID)
			return
		}
	}
	t.mu.Lock()
	now := time.Now().UTC()
	switch {
	case u != nil && t.byID[u.ID] != u:
		t.mu.Unlock()
		notFound(w, r, existingID)
		return
	case u != nil && reset && !hasEmail(u, email):
		t.mu.Unlock()
		graphError(w, r, http.StatusBadRequest, "BadRequest", "The email you're using to invite this user doesn't match any emails on the user object.")
		return
	case u != nil && (reset || u.ExternalUserState == ""):
		u.ExternalUserState, u.ExternalUserStateChangeDateTime = "PendingAcceptance", now
	case u == nil:
		u = t.byMail[strings.ToLower(email)] // re-invite: the same user
	}
	if u == nil {
		if name == "" {
			name = email[:at]
		}
		u = t.insert(&User{ID: newGUID(), DisplayName: name, Mail: email, OtherMails: []string{email},
			UserPrincipalName: strings.Replace(email, "@", "_", 1) + "#EXT#@" + t.cfg.VerifiedDomains[0],
			UserType:          userType, CreationType: "Invitation", ExternalUserState: "PendingAcceptance",
			ExternalUserStateChangeDateTime: now, AccountEnabled: true, ProxyAddresses: []string{"SMTP:" + email}})
		if t.replication > 0 {
			t.hidden[u.ID] = t.replication
		}
		t.created[u.ID] = t.now()
	}
	t.invitations = append(t.invitations, Invitation{Body: body, UserID: u.ID, InvitedBy: c.oid})
	id, tenant := u.ID, t.cfg.ID
	t.mu.Unlock()
	ticket := strings.ReplaceAll(newGUID(), "-", "")
	redeem := "https://login.microsoftonline.com/redeem?rd=" + url.QueryEscape(fmt.Sprintf(
		"https://invitations.microsoft.com/redeem/?tenant=%s&user=%s&ticket=%s&ver=2.0", tenant, id, ticket))
	send, _ := body["sendInvitationMessage"].(bool)
	writeJSON(w, http.StatusCreated, map[string]any{
		"@odata.context":          "https://graph.microsoft.com/v1.0/$metadata#invitations/$entity",
		"id":                      newGUID(),
		"inviteRedeemUrl":         redeem,
		"invitedUserDisplayName":  body["invitedUserDisplayName"],
		"invitedUserType":         userType,
		"invitedUserEmailAddress": email,
		"sendInvitationMessage":   send,
		"resetRedemption":         reset,
		"inviteRedirectUrl":       redirect,
		"status":                  "PendingAcceptance",
		"invitedUserMessageInfo":  body["invitedUserMessageInfo"],
		"invitedUser":             map[string]any{"id": id},
	})
}

func (t *Tenant) addMember(w http.ResponseWriter, r *http.Request, gid string) {
	uid, ok := readRef(w, r)
	if !ok {
		return
	}
	t.mu.Lock()
	_, group := t.groups[gid]
	t.mu.Unlock()
	if !group {
		notFound(w, r, gid)
		return
	}
	if _, ok := t.visible(uid); !ok {
		notFound(w, r, uid)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.lookup(uid)
	if u == nil { // deleted meanwhile
		notFound(w, r, uid)
		return
	}
	m := t.members[gid]
	if m == nil {
		m = map[string]int{}
		t.members[gid] = m
	}
	if _, ok := m[u.ID]; ok {
		graphError(w, r, http.StatusBadRequest, "Request_BadRequest",
			"One or more added object references already exist for the following modified properties: 'members'.")
		return
	}
	t.memberSeq++
	m[u.ID] = t.memberSeq
	w.WriteHeader(http.StatusNoContent)
}

func (t *Tenant) removeMember(w http.ResponseWriter, r *http.Request, gid, uid string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.groups[gid]; !ok {
		notFound(w, r, gid)
		return
	}
	if _, ok := t.members[gid][uid]; !ok {
		notFound(w, r, uid)
		return
	}
	delete(t.members[gid], uid)
	w.WriteHeader(http.StatusNoContent)
}

// hasEmail reports whether email is one of u's addresses.
func hasEmail(u *User, email string) bool {
	eq := func(s string) bool { return strings.EqualFold(s, email) }
	return eq(u.Mail) || eq(u.UserPrincipalName) || slices.ContainsFunc(u.OtherMails, eq) ||
		slices.ContainsFunc(u.ProxyAddresses, func(p string) bool { return eq(strings.TrimPrefix(strings.ToLower(p), "smtp:")) })
}

// addSponsor is POST /users/{id}/sponsors/$ref: 204, 400 if the sponsor
// already is one (like a group add), 404 for a missing user or sponsor.
func (t *Tenant) addSponsor(w http.ResponseWriter, r *http.Request, uid string) {
	sid, ok := readRef(w, r)
	if !ok {
		return
	}
	if _, ok := t.visible(uid); !ok {
		notFound(w, r, uid)
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lookup(sid) == nil {
		notFound(w, r, sid)
		return
	}
	if t.sponsors == nil {
		t.sponsors = map[string][]string{}
	}
	if slices.Contains(t.sponsors[uid], sid) {
		graphError(w, r, http.StatusBadRequest, "Request_BadRequest",
			"One or more added object references already exist for the following modified properties: 'sponsors'.")
		return
	}
	t.sponsors[uid] = append(t.sponsors[uid], sid)
	w.WriteHeader(http.StatusNoContent)
}

// Sponsors returns a user's sponsors' IDs.
func (t *Tenant) Sponsors(uid string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.sponsors[uid])
}

// getGroup is GET /groups/{id}: the group's id and displayName.
func (t *Tenant) getGroup(w http.ResponseWriter, r *http.Request, id string) {
	t.mu.Lock()
	name, ok := t.groups[id]
	k, set := t.groupKinds[id]
	t.mu.Unlock()
	if !ok {
		notFound(w, r, id)
		return
	}
	if !set {
		k = GroupKind{GroupTypes: []string{}, SecurityEnabled: true}
	}
	if k.GroupTypes == nil {
		k.GroupTypes = []string{}
	}
	onPrem := any(nil) // Graph's null for a cloud group
	if k.OnPremisesSyncEnabled {
		onPrem = true
	}
	writeJSON(w, http.StatusOK, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#groups/$entity",
		"id": id, "displayName": name, "groupTypes": k.GroupTypes, "securityEnabled": k.SecurityEnabled, "mailEnabled": k.MailEnabled,
		"onPremisesSyncEnabled": onPrem, "isAssignableToRole": k.IsAssignableToRole})
}

// readRef reads a $ref body ({"@odata.id": ".../directoryObjects/{id}"})
// and returns the object ID; on a bad body it writes Graph's 400.
func readRef(w http.ResponseWriter, r *http.Request) (string, bool) {
	var body struct {
		ID string `json:"@odata.id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		graphError(w, r, http.StatusBadRequest, "BadRequest", "Unable to read JSON request payload.")
		return "", false
	}
	i := strings.LastIndex(body.ID, "/directoryObjects/")
	if i < 0 || !strings.HasPrefix(body.ID, "http") {
		graphError(w, r, http.StatusBadRequest, "BadRequest", "Invalid URL format specified in payload.")
		return "", false
	}
	return body.ID[i+len("/directoryObjects/"):], true
}

package graphfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
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
	t.mu.Lock()
	var out []User
	for _, u := range t.users {
		if t.hidden[u.ID] > 0 {
			continue // not yet replicated to the query index
		}
		if len(clauses) == 0 || slices.ContainsFunc(clauses, func(c Clause) bool { return c.Match(u) }) {
			out = append(out, *u)
		}
	}
	t.mu.Unlock()
	if out == nil {
		out = []User{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users", "value": out})
}

// visible reports whether user id can be read, counting down replication.
func (t *Tenant) visible(id string) (*User, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.user(id)
	if u == nil {
		return nil, false
	}
	if t.hidden[id] > 0 {
		t.hidden[id]--
		return nil, false
	}
	return u, true
}

func (t *Tenant) getUser(w http.ResponseWriter, r *http.Request, id string) {
	u, ok := t.visible(id)
	if !ok {
		notFound(w, r, id)
		return
	}
	t.mu.Lock()
	c := *u
	t.mu.Unlock()
	writeJSON(w, http.StatusOK, c)
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
	domain := strings.ToLower(email[at+1:])
	if slices.Contains(t.cfg.VerifiedDomains, domain) {
		graphError(w, r, http.StatusBadRequest, "BadRequest", "The invited user already exists in the directory as a member of this organization.")
		return
	}
	userType, _ := body["invitedUserType"].(string)
	if userType == "" {
		userType = "Guest"
	}
	name, _ := body["invitedUserDisplayName"].(string)
	t.mu.Lock()
	var u *User
	for _, x := range t.users {
		if strings.EqualFold(x.Mail, email) || slices.ContainsFunc(x.OtherMails, func(m string) bool { return strings.EqualFold(m, email) }) {
			u = x
		}
	}
	if u == nil {
		if name == "" {
			name = email[:at]
		}
		u = &User{ID: newGUID(), DisplayName: name, Mail: email, OtherMails: []string{email},
			UserPrincipalName: strings.Replace(email, "@", "_", 1) + "#EXT#@" + t.cfg.VerifiedDomains[0],
			UserType:          userType, CreationType: "Invitation", ExternalUserState: "PendingAcceptance",
			ExternalUserStateChangeDateTime: time.Now().UTC(), AccountEnabled: true, ProxyAddresses: []string{"SMTP:" + email}}
		t.users = append(t.users, u)
		if t.replication > 0 {
			t.hidden[u.ID] = t.replication
		}
	}
	t.invitations = append(t.invitations, Invitation{Body: body, UserID: u.ID})
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
		"resetRedemption":         false,
		"inviteRedirectUrl":       redirect,
		"status":                  "PendingAcceptance",
		"invitedUserMessageInfo":  body["invitedUserMessageInfo"],
		"invitedUser":             map[string]any{"id": id},
	})
}

func (t *Tenant) addMember(w http.ResponseWriter, r *http.Request, gid string) {
	var body struct {
		ID string `json:"@odata.id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		graphError(w, r, http.StatusBadRequest, "BadRequest", "Unable to read JSON request payload.")
		return
	}
	i := strings.LastIndex(body.ID, "/directoryObjects/")
	if i < 0 || !strings.HasPrefix(body.ID, "http") {
		graphError(w, r, http.StatusBadRequest, "BadRequest", "Invalid URL format specified in payload.")
		return
	}
	uid := body.ID[i+len("/directoryObjects/"):]
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
	if slices.Contains(t.members[gid], uid) {
		graphError(w, r, http.StatusBadRequest, "Request_BadRequest",
			"One or more added object references already exist for the following modified properties: 'members'.")
		return
	}
	t.members[gid] = append(t.members[gid], uid)
	w.WriteHeader(http.StatusNoContent)
}

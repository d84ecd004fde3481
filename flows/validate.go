package flows

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Length limits. Graph documents the user property limits; the email
// limits are RFC 5321's (local part 64, address 254).
const (
	MaxEmailLen       = 254
	MaxLocalPartLen   = 64
	MaxDisplayNameLen = 256
	MaxMessageLen     = 2000
	MaxRedirectURLLen = 2048
	MaxGivenNameLen   = 64
	MaxSurnameLen     = 64
	MaxCompanyNameLen = 64
	MaxJobTitleLen    = 128
)

// forbiddenEmailChars are the characters Graph documents as not permitted
// in invitedUserEmailAddress (reference/graph.md §2.1).
const forbiddenEmailChars = "~!#$%^&*()+=[]{}\\/|;:\"<>?,"

// Group is a group the policy offers in the modal.
type Group struct {
	Name string
	ID   string // Entra group object ID
	// Approvers, if set, must approve (one of them) an invitation that
	// asks for this group.
	Approvers []string
}

// Policy is what the operator configured about who may do what.
type Policy struct {
	Admins             []string // Slack user IDs
	Groups             []Group
	DefaultRedirectURL string

	// Inviters are who may invite at all (admins always may); empty:
	// everyone.
	Inviters []string
	// Domains are the partner-domain rules.
	Domains DomainPolicy
	// Approvers decide invitations a domain rule sends for approval;
	// empty: the admins.
	Approvers []string
	// ApprovalChannel is where approval requests are posted; "": each
	// approver gets a DM.
	ApprovalChannel string
	// ApprovalTTL is how long a request waits for a decision; zero: 72h.
	ApprovalTTL time.Duration

	// Expiry is the default access period of new guests (zero: no
	// expiry); ExpiryWarning how long before the end the sponsor is asked
	// (zero: 7 days); ExpiryAction what happens (default remove groups).
	Expiry        time.Duration
	ExpiryWarning time.Duration
	ExpiryAction  ExpiryAction

	// RemindAfter, if set, replaces Config.RemindAfter: the age of a
	// pending invitation at which the inviter is reminded; negative: none.
	RemindAfter time.Duration
}

// NoExpiry is the Request.ExpiresIn an inviter sends to choose "never"
// (zero means "not chosen": the policy's default applies).
const NoExpiry time.Duration = -1

// MaxExpiry bounds an access period.
const MaxExpiry = 5 * 365 * 24 * time.Hour

// UserGroups returns the Slack user group IDs (S…) the policy names where
// it names people, so the adapter can expand them (see ExpandUserGroups).
func (p Policy) UserGroups() []string {
	var out []string
	add := func(ids []string) {
		for _, id := range ids {
			if strings.HasPrefix(id, "S") && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	add(p.Admins)
	add(p.Inviters)
	add(p.Approvers)
	for _, g := range p.Groups {
		add(g.Approvers)
	}
	return out
}

// ExpandUserGroups returns p with each user group ID replaced by its
// members (members[id]). A group missing from members stays as its ID,
// which matches nobody: it grants nothing, and a list of only unresolved
// groups still restricts (an empty inviters list would mean everyone).
func (p Policy) ExpandUserGroups(members map[string][]string) Policy {
	expand := func(ids []string) []string {
		var out []string
		for _, id := range ids {
			m, ok := members[id]
			if !strings.HasPrefix(id, "S") || !ok {
				out = append(out, id)
				continue
			}
			out = append(out, m...)
			if len(m) == 0 {
				out = append(out, id) // an empty group still restricts
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	p.Admins, p.Inviters, p.Approvers = expand(p.Admins), expand(p.Inviters), expand(p.Approvers)
	groups := slices.Clone(p.Groups)
	for i := range groups {
		groups[i].Approvers = expand(groups[i].Approvers)
	}
	p.Groups = groups
	return p
}

// IsAdmin reports whether the Slack user is a configured admin.
func (p Policy) IsAdmin(userID string) bool { return slices.Contains(p.Admins, userID) }

// GroupName returns the configured name of a group ID, or the ID.
func (p Policy) GroupName(id string) string {
	for _, g := range p.Groups {
		if g.ID == id {
			return g.Name
		}
	}
	return id
}

// CheckEmail returns what is wrong with an address, or "". It rejects what
// Graph documents as invalid; what the docs leave open (e.g. non-ASCII) is
// left for Graph to decide, and Graph's answer is shown to the inviter.
func CheckEmail(email string) string {
	if email == "" {
		return "Enter the guest's email address."
	}
	if len(email) > MaxEmailLen {
		return fmt.Sprintf("An email address can be at most %d characters.", MaxEmailLen)
	}
	if strings.ContainsFunc(email, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError }) {
		return "The address must not contain spaces or control characters."
	}
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return "That is not an email address (expected name@domain)."
	}
	local, domain := email[:at], email[at+1:]
	if strings.Contains(local, "@") {
		return "An email address has exactly one @."
	}
	if len(local) > MaxLocalPartLen {
		return fmt.Sprintf("The part before @ can be at most %d characters.", MaxLocalPartLen)
	}
	if i := strings.IndexAny(local, forbiddenEmailChars); i >= 0 {
		return fmt.Sprintf("Microsoft Entra does not accept %q in an invited address.", local[i])
	}
	if strings.ContainsAny(local[:1], ".-") || strings.ContainsAny(local[len(local)-1:], ".-") {
		return "The part before @ must not start or end with '.' or '-'."
	}
	if strings.Contains(local, "..") {
		return "The part before @ must not contain '..'."
	}
	if msg := checkDomain(domain); msg != "" {
		return msg
	}
	return ""
}

func checkDomain(domain string) string {
	labels := strings.Split(domain, ".")
	if len(labels) < 2 {
		return "The domain after @ must contain a dot (like contoso.com)."
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "The domain after @ is not valid."
		}
		for _, r := range l {
			if r < 0x80 && !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return fmt.Sprintf("The domain after @ must not contain %q.", r)
			}
		}
	}
	return ""
}

// CheckRedirectURL returns what is wrong with a redirect URL, or "".
func CheckRedirectURL(raw string) string {
	if raw == "" {
		return "Enter where the guest lands after accepting (an https:// URL)."
	}
	if len(raw) > MaxRedirectURLLen {
		return fmt.Sprintf("The URL can be at most %d characters.", MaxRedirectURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "That is not a valid URL (expected https://…)."
	}
	if u.Scheme != "https" {
		return "The redirect URL must start with https://."
	}
	if u.User != nil {
		return "The redirect URL must not contain a user name or password."
	}
	return ""
}

// Validate checks a request as the inviter submitted it. admin says whether
// the inviter is an admin; domains are the tenant's verified domains (nil
// when not yet known: the check then happens again before the invitation).
// It returns nil when the request is valid.
func Validate(r Request, admin bool, p Policy, domains []string) FieldErrors {
	errs := FieldErrors{}
	if msg := CheckEmail(r.Email); msg != "" {
		errs[FieldEmail] = msg
	} else if IsInternal(r.Email, domains) {
		errs[FieldEmail] = fmt.Sprintf("%s is one of your organisation's own domains: that is an internal user, not a guest.", Domain(r.Email))
	}
	tooLong(errs, FieldDisplayName, r.DisplayName, MaxDisplayNameLen)
	if msg := CheckRedirectURL(r.RedirectURL); msg != "" {
		errs[FieldRedirectURL] = msg
	}
	switch r.Delivery {
	case DeliverySlackLink, DeliveryMicrosoftEmail:
	default:
		errs[FieldDelivery] = "Choose how the invitation is delivered."
	}
	tooLong(errs, FieldMessage, r.Message, MaxMessageLen)
	if r.CC != "" {
		if msg := CheckEmail(r.CC); msg != "" {
			errs[FieldCC] = msg
		}
	}
	switch r.UserType {
	case UserTypeGuest:
	case UserTypeMember:
		if !admin {
			errs[FieldUserType] = "Only invitebot admins may invite members."
		}
	default:
		errs[FieldUserType] = "Choose Guest or Member."
	}
	for _, id := range r.Groups {
		if !slices.ContainsFunc(p.Groups, func(g Group) bool { return g.ID == id }) {
			errs[FieldGroups] = "That group is not offered any more; reopen the dialog."
		}
	}
	if r.ExpiresIn < 0 || r.ExpiresIn > MaxExpiry {
		errs[FieldExpiresIn] = "Choose an expiry of at most 5 years, or none."
	}
	tooLong(errs, FieldGivenName, r.Attributes.GivenName, MaxGivenNameLen)
	tooLong(errs, FieldSurname, r.Attributes.Surname, MaxSurnameLen)
	tooLong(errs, FieldCompanyName, r.Attributes.CompanyName, MaxCompanyNameLen)
	tooLong(errs, FieldJobTitle, r.Attributes.JobTitle, MaxJobTitleLen)
	if len(errs) == 0 {
		return nil
	}
	return errs
}

func tooLong(errs FieldErrors, f Field, v string, limit int) {
	if utf8.RuneCountInString(v) > limit {
		errs[f] = fmt.Sprintf("At most %d characters (this has %d).", limit, utf8.RuneCountInString(v))
	}
}

// IsInternal reports whether email is in one of the verified domains or one
// of their subdomains.
func IsInternal(email string, domains []string) bool {
	d := Domain(email)
	for _, v := range domains {
		v = strings.ToLower(v)
		if d == v || strings.HasSuffix(d, "."+v) {
			return true
		}
	}
	return false
}

// Normalize trims the request's free-text fields and fills defaults.
func (r Request) Normalize(p Policy) Request {
	r.Email = strings.TrimSpace(r.Email)
	r.DisplayName = strings.TrimSpace(r.DisplayName)
	r.RedirectURL = strings.TrimSpace(r.RedirectURL)
	if r.RedirectURL == "" {
		r.RedirectURL = p.DefaultRedirectURL
	}
	r.Message = strings.TrimSpace(r.Message)
	r.CC = strings.TrimSpace(r.CC)
	if r.Delivery == "" {
		r.Delivery = DeliverySlackLink
	}
	if r.UserType == "" {
		r.UserType = UserTypeGuest
	}
	switch r.ExpiresIn {
	case 0:
		r.ExpiresIn = p.Expiry // not chosen: the policy's default
	case NoExpiry:
		r.ExpiresIn = 0
	}
	r.Attributes.GivenName = strings.TrimSpace(r.Attributes.GivenName)
	r.Attributes.Surname = strings.TrimSpace(r.Attributes.Surname)
	r.Attributes.CompanyName = strings.TrimSpace(r.Attributes.CompanyName)
	r.Attributes.JobTitle = strings.TrimSpace(r.Attributes.JobTitle)
	return r
}

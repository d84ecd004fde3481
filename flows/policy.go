package flows

import (
	"fmt"
	"slices"
	"strings"
)

// DomainAction is what a partner-domain rule does with an invitation.
type DomainAction string

// The domain actions.
const (
	DomainAllow       DomainAction = "allow"        // invite; chosen groups' approvers still apply
	DomainDeny        DomainAction = "deny"         // refuse, with the rule's reason
	DomainApprove     DomainAction = "approve"      // an approver must approve
	DomainAutoApprove DomainAction = "auto_approve" // invite without any approval
)

// DomainActions lists the valid actions.
var DomainActions = []DomainAction{DomainAllow, DomainDeny, DomainApprove, DomainAutoApprove}

// DomainRule is the policy for one partner domain ("fabrikam.com") or its
// subdomains ("*.fabrikam.com"), with defaults for its invitations.
type DomainRule struct {
	Domain string
	Action DomainAction
	Reason string // shown to the inviter when the rule denies

	// Defaults, applied where the inviter left the field at its default.
	UserType    UserType
	Groups      []string // added to the inviter's choice
	RedirectURL string
	Message     string
}

// DomainPolicy is the partner-domain rules and what applies to the rest.
type DomainPolicy struct {
	Default DomainAction // for domains no rule names; "": allow
	Rules   []DomainRule
}

// Rule returns the rule for domain: an exact rule first, else the
// wildcard rule with the longest suffix; nil if none applies.
func (d DomainPolicy) Rule(domain string) *DomainRule {
	domain = strings.ToLower(domain)
	var best *DomainRule
	for i := range d.Rules {
		r := &d.Rules[i]
		pat := strings.ToLower(r.Domain)
		switch {
		case pat == domain:
			return r
		case strings.HasPrefix(pat, "*.") && strings.HasSuffix(domain, pat[1:]):
			if best == nil || len(pat) > len(best.Domain) {
				best = r
			}
		}
	}
	return best
}

// Decision is the policy's verdict on an invitation request.
type Decision struct {
	// Denied is why the request is refused; "" if it is not.
	Denied string
	// Approvers are who may approve it (one suffices); empty: no approval
	// is needed. The inviter is never among them.
	Approvers []string
	// Rule is the domain rule that applied, if any.
	Rule *DomainRule
	// Stages are the approvals needed: one of each stage's approvers must
	// approve. Approvers is their union.
	Stages []Stage
}

// Stage is one approval a request needs, from one of its approvers.
type Stage struct {
	Name      string   // what is approved: "the partner domain x", "the group y"
	Approvers []string // Slack user IDs; the requester is never among them
}

// NeedsApproval reports whether someone must approve the request first.
func (d Decision) NeedsApproval() bool { return len(d.Approvers) > 0 }

// MayInvite reports whether the Slack user may invite guests at all.
func (p Policy) MayInvite(userID string) bool {
	return len(p.Inviters) == 0 || slices.Contains(p.Inviters, userID) || p.IsAdmin(userID)
}

// Decide applies the policy to r, requested by inviter (a Slack user ID).
// It is pure: the same policy and request always give the same decision,
// and it is evaluated again when an approver decides, so a policy change
// in between is honoured.
func (p Policy) Decide(r Request, inviter string) Decision {
	if !p.MayInvite(inviter) {
		return Decision{Denied: "You are not among the people allowed to invite guests. Ask an invitebot admin."}
	}
	domain := Domain(r.Email)
	d := Decision{Rule: p.Domains.Rule(domain)}
	action := p.Domains.Default
	if d.Rule != nil {
		action = d.Rule.Action
	}
	if action == "" {
		action = DomainAllow
	}
	var stages []Stage
	switch action {
	case DomainDeny:
		d.Denied = fmt.Sprintf("Invitations to %s are not allowed.", domain)
		if d.Rule == nil {
			d.Denied = fmt.Sprintf("%s is not one of the partner domains guests may be invited from.", domain)
		} else if d.Rule.Reason != "" {
			d.Denied += " " + d.Rule.Reason
		}
		return d
	case DomainAutoApprove:
		return d
	case DomainApprove:
		a := p.Approvers
		if len(a) == 0 {
			a = p.Admins
		}
		stages = append(stages, Stage{Name: "the partner domain " + domain, Approvers: a})
	}
	for _, gid := range r.Groups {
		if i := slices.IndexFunc(p.Groups, func(g Group) bool { return g.ID == gid }); i >= 0 && len(p.Groups[i].Approvers) > 0 {
			stages = append(stages, Stage{Name: "the group " + p.Groups[i].Name, Approvers: p.Groups[i].Approvers})
		}
	}
	// Each stage needs one of its own approvers: the approver of a harmless
	// group cannot approve a sensitive one. Nobody approves their own
	// request, and a Slack user group not (yet) read approves nothing.
	for i := range stages {
		st := &stages[i]
		unread := slices.ContainsFunc(st.Approvers, func(a string) bool { return strings.HasPrefix(a, "S") })
		st.Approvers = slices.DeleteFunc(slices.Clone(st.Approvers), func(a string) bool { return a == inviter || strings.HasPrefix(a, "S") })
		slices.Sort(st.Approvers)
		st.Approvers = slices.Compact(st.Approvers)
		switch {
		case len(st.Approvers) == 0 && unread:
			d.Denied = "This invitation needs approval for " + st.Name + ", but its approvers (a Slack user group) could not be read just now. Try again in a few minutes."
			return d
		case len(st.Approvers) == 0:
			d.Denied = "This invitation needs approval for " + st.Name + ", and you are its only approver: nobody may approve their own request. Ask an invitebot admin."
			return d
		}
		d.Approvers = append(d.Approvers, st.Approvers...)
	}
	slices.Sort(d.Approvers)
	d.Approvers = slices.Compact(d.Approvers)
	d.Stages = stages
	return d
}

// WithDomainDefaults fills what the inviter left at its default from the
// domain rule's defaults, and adds the rule's groups.
func (p Policy) WithDomainDefaults(r Request) Request {
	rule := p.Domains.Rule(Domain(strings.TrimSpace(r.Email)))
	if rule == nil {
		return r
	}
	if rule.RedirectURL != "" && (strings.TrimSpace(r.RedirectURL) == "" || strings.TrimSpace(r.RedirectURL) == p.DefaultRedirectURL) {
		r.RedirectURL = rule.RedirectURL
	}
	if rule.Message != "" && strings.TrimSpace(r.Message) == "" {
		r.Message = rule.Message
	}
	if rule.UserType != "" && (r.UserType == "" || r.UserType == UserTypeGuest) {
		r.UserType = rule.UserType
	}
	r.Groups = slices.Clone(r.Groups)
	for _, g := range rule.Groups {
		if !slices.Contains(r.Groups, g) {
			r.Groups = append(r.Groups, g)
		}
	}
	return r
}

package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/invitebot/invitebot/flows"
)

// Policy is the policy file (INVITEBOT_CONFIG). Its first keys, admins and
// groups, are fixed by invitebot's contract; later keys sit beside them.
type Policy struct {
	// Admins are Slack user IDs who may use admin-only options.
	Admins []string `yaml:"admins"`
	// Groups are offered in the invitation dialog.
	Groups []Group `yaml:"groups"`
	// Templates are texts the bot renders.
	Templates Templates `yaml:"templates"`
	// Inviters are who may invite at all (admins always may); empty:
	// everyone in the workspace.
	Inviters []string `yaml:"inviters"`
	// Domains are the partner-domain rules.
	Domains Domains `yaml:"domains"`
	// Approvals say who decides and where requests go.
	Approvals Approvals `yaml:"approvals"`
	// Expiry is how long guests' access lasts by default.
	Expiry Expiry `yaml:"expiry"`
	// Reminders configure the inviter's reminder about a pending invitation.
	Reminders Reminders `yaml:"reminders"`

	// Warnings are what was ignored: top-level keys this version does not
	// know (a typo, or a setting of a newer invitebot after a rollback).
	// Inside a known key, unknown fields are errors.
	Warnings []string `yaml:"-"`
	// Unknown catches the top-level keys this version does not know.
	Unknown map[string]yaml.Node `yaml:",inline"`
}

// Group is a group offered in the dialog.
type Group struct {
	Name string `yaml:"name"` // shown to the inviter (at most 75 characters)
	ID   string `yaml:"id"`   // Entra group object ID
	// Approvers, if set: an invitation asking for this group needs one of
	// them to approve it.
	Approvers []string `yaml:"approvers"`
}

// Domains are the partner-domain rules.
type Domains struct {
	// Default is the action for domains no rule names: allow (the
	// default), deny or approve.
	Default string       `yaml:"default"`
	Rules   []DomainRule `yaml:"rules"`
}

// DomainRule is one partner domain's rule and defaults.
type DomainRule struct {
	Domain      string   `yaml:"domain"` // fabrikam.com, or *.fabrikam.com for its subdomains
	Action      string   `yaml:"action"` // allow, deny, approve, auto_approve
	Reason      string   `yaml:"reason"` // shown when denied
	UserType    string   `yaml:"user_type"`
	Groups      []string `yaml:"groups"` // object IDs among the offered groups
	RedirectURL string   `yaml:"redirect_url"`
	Message     string   `yaml:"message"`
}

// Reminders configure reminders to inviters.
type Reminders struct {
	// PendingAfter is the age of a pending invitation at which the inviter
	// gets one reminder ("3d", a Go duration, or "0" for none); it
	// replaces INVITEBOT_REMIND_AFTER.
	PendingAfter string `yaml:"pending_after"`
}

// Expiry configures the end of guests' access.
type Expiry struct {
	// Default is the access period of new guests ("90d", or a Go duration
	// like "2160h"); empty: no expiry unless the inviter chooses one.
	Default string `yaml:"default"`
	// RemindBefore is how long before the end the sponsor is asked to
	// extend or let it expire; empty: 7d.
	RemindBefore string `yaml:"remind_before"`
	// Action is remove_groups (default: the groups invitebot added) or
	// disable (block sign-in).
	Action string `yaml:"action"`
}

// Approvals configure who decides and where requests are posted.
type Approvals struct {
	// Approvers decide invitations a domain rule sends for approval;
	// empty: the admins.
	Approvers []string `yaml:"approvers"`
	// Channel is where requests are posted (invite invitebot to it);
	// empty: each approver gets a DM.
	Channel string `yaml:"channel"`
	// ExpireAfter is how long a request waits for a decision (Go
	// duration, at least 1h); empty: 72h.
	ExpireAfter string `yaml:"expire_after"`
}

// Templates are Go text/template texts.
type Templates struct {
	// Invitation is the ready-to-forward invitation text DMed to the
	// inviter (and to the invitee on request) when Microsoft's email is
	// suppressed. Fields: .GuestName .GuestEmail .RedeemURL .Message
	// .InviterName. Empty: DefaultInvitationTemplate.
	Invitation string `yaml:"invitation"`
}

// Example is a complete, commented policy file (`invitebot policy example`).
//
//go:embed policy.example.yaml
var Example []byte

// DefaultInvitationTemplate is used when templates.invitation is unset.
const DefaultInvitationTemplate = `Hi {{.GuestName}},

{{.InviterName}} has invited you to collaborate with us as a guest in our Microsoft Entra organisation.
{{- if .Message}}

{{.Message}}
{{- end}}

To accept, open this link and sign in with {{.GuestEmail}}:
{{.RedeemURL}}`

// Block Kit limits the policy must respect (static_select options).
const (
	maxGroups       = 100
	maxGroupNameLen = 75
)

// slackUserRE matches a Slack user ID, or a user group ID (S…) whose
// members it stands for.
var slackUserRE = regexp.MustCompile(`^[UWS][A-Z0-9]{2,20}$`)

// LoadPolicy reads and validates a policy file.
func LoadPolicy(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy parses and validates a policy file's contents. Errors name the
// line and the field.
func ParsePolicy(data []byte) (*Policy, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, err
	}
	p := &Policy{}
	if len(root.Content) == 0 {
		return p, nil // empty file
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(p); err != nil {
		return nil, err
	}
	// Unknown keys are warned about at the key's line (not its value's),
	// in the file's order.
	if top := root.Content[0]; top.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(top.Content); i += 2 {
			k := top.Content[i]
			if _, unknown := p.Unknown[k.Value]; unknown {
				p.Warnings = append(p.Warnings, fmt.Sprintf("line %d: unknown key %q ignored (a typo, or a setting of a newer invitebot?)", k.Line, k.Value))
			}
		}
	}
	var errs []error
	bad := func(path []any, format string, a ...any) {
		errs = append(errs, fmt.Errorf("line %d: %s: %s", lineOf(root.Content[0], path), fieldName(path), fmt.Sprintf(format, a...)))
	}
	for i, a := range p.Admins {
		if !slackUserRE.MatchString(a) {
			bad([]any{"admins", i}, "%q is not a Slack user ID (like U0123ABCD) or user group ID (like S0123ABCD)", a)
		}
	}
	if len(p.Groups) > maxGroups {
		bad([]any{"groups"}, "at most %d groups can be offered in a dialog", maxGroups)
	}
	seen := map[string]bool{}
	for i, g := range p.Groups {
		switch {
		case strings.TrimSpace(g.Name) == "":
			bad([]any{"groups", i, "name"}, "required")
		case len([]rune(g.Name)) > maxGroupNameLen:
			bad([]any{"groups", i, "name"}, "at most %d characters", maxGroupNameLen)
		}
		switch {
		case !guidRE.MatchString(g.ID):
			bad([]any{"groups", i, "id"}, "%q is not an Entra object ID (a GUID)", g.ID)
		case seen[strings.ToLower(g.ID)]:
			bad([]any{"groups", i, "id"}, "group %s is listed twice", g.ID)
		}
		seen[strings.ToLower(g.ID)] = true
	}
	if _, err := p.InvitationTemplate(); err != nil {
		bad([]any{"templates", "invitation"}, "%v", err)
	}
	p.checkGovernance(bad, seen)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// InvitationTemplate returns the parsed invitation text template.
func (p *Policy) InvitationTemplate() (*template.Template, error) {
	text := p.Templates.Invitation
	if text == "" {
		text = DefaultInvitationTemplate
	}
	return template.New("invitation").Option("missingkey=error").Parse(text)
}

// lineOf returns the line of the node at path (map keys and list indexes)
// below n, or of the deepest node found.
func lineOf(n *yaml.Node, path []any) int {
	for _, step := range path {
		switch k := step.(type) {
		case string:
			if n.Kind != yaml.MappingNode {
				return n.Line
			}
			found := false
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					n, found = n.Content[i+1], true
					break
				}
			}
			if !found {
				return n.Line
			}
		case int:
			if n.Kind != yaml.SequenceNode || k >= len(n.Content) {
				return n.Line
			}
			n = n.Content[k]
		}
	}
	return n.Line
}

func fieldName(path []any) string {
	var b strings.Builder
	for _, step := range path {
		switch k := step.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			fmt.Fprintf(&b, "[%d]", k)
		}
	}
	return b.String()
}

var (
	slackChannelRE = regexp.MustCompile(`^[CG][A-Z0-9]{2,20}$`)
	domainRE       = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$`)
)

// checkGovernance validates inviters, group approvers, domain rules and
// approvals; groups is the set of offered group IDs (lower-cased).
func (p *Policy) checkGovernance(bad func(path []any, format string, a ...any), groups map[string]bool) {
	users := func(path []any, ids []string) {
		for i, u := range ids {
			if !slackUserRE.MatchString(u) {
				bad(append(path, i), "%q is not a Slack user ID (like U0123ABCD) or user group ID (like S0123ABCD)", u)
			}
		}
	}
	users([]any{"inviters"}, p.Inviters)
	for i, g := range p.Groups {
		users([]any{"groups", i, "approvers"}, g.Approvers)
	}
	users([]any{"approvals", "approvers"}, p.Approvals.Approvers)
	if c := p.Approvals.Channel; c != "" && !slackChannelRE.MatchString(c) {
		bad([]any{"approvals", "channel"}, "%q is not a Slack channel ID (like C0123ABCD; not its name)", c)
	}
	if v := p.Approvals.ExpireAfter; v != "" {
		if d, err := ParseDuration(v); err != nil || d < time.Hour {
			bad([]any{"approvals", "expire_after"}, "%q is not a duration of at least 1h (like 72h)", v)
		}
	}
	for _, f := range []struct{ key, v string }{{"default", p.Expiry.Default}, {"remind_before", p.Expiry.RemindBefore}} {
		if f.v == "" {
			continue
		}
		if d, err := ParseDuration(f.v); err != nil || d < 24*time.Hour || d > flows.MaxExpiry {
			bad([]any{"expiry", f.key}, "%q is not a period between 1d and 5 years (like 90d)", f.v)
		}
	}
	if v := p.Reminders.PendingAfter; v != "" && v != "0" {
		if d, err := ParseDuration(v); err != nil || d < time.Minute {
			bad([]any{"reminders", "pending_after"}, "%q is not a duration (like 3d or 72h), or 0 for no reminder", v)
		}
	}
	switch p.Expiry.Action {
	case "", string(flows.ExpireRemoveGroups), string(flows.ExpireDisable):
	default:
		bad([]any{"expiry", "action"}, "%q: remove_groups or disable", p.Expiry.Action)
	}
	switch p.Domains.Default {
	case "", string(flows.DomainAllow), string(flows.DomainDeny), string(flows.DomainApprove):
	default:
		bad([]any{"domains", "default"}, "%q: one of allow, deny, approve", p.Domains.Default)
	}
	seen := map[string]bool{}
	for i, r := range p.Domains.Rules {
		at := func(f string) []any { return []any{"domains", "rules", i, f} }
		d := strings.ToLower(r.Domain)
		switch {
		case !domainRE.MatchString(d):
			bad(at("domain"), "%q is not a domain (like fabrikam.com, or *.fabrikam.com for its subdomains)", r.Domain)
		case seen[d]:
			bad(at("domain"), "%s has two rules", r.Domain)
		}
		seen[d] = true
		if !slices.Contains(flows.DomainActions, flows.DomainAction(r.Action)) {
			bad(at("action"), "%q: one of allow, deny, approve, auto_approve", r.Action)
		}
		if len([]rune(r.Reason)) > 500 {
			bad(at("reason"), "at most 500 characters")
		}
		switch r.UserType {
		case "", string(flows.UserTypeGuest), string(flows.UserTypeMember):
		default:
			bad(at("user_type"), "%q: Guest or Member", r.UserType)
		}
		for j, g := range r.Groups {
			if !groups[strings.ToLower(g)] {
				bad([]any{"domains", "rules", i, "groups", j}, "%q is not one of the groups above", g)
			}
		}
		if r.RedirectURL != "" {
			if msg := flows.CheckRedirectURL(r.RedirectURL); msg != "" {
				bad(at("redirect_url"), "%s", msg)
			}
		}
		if len([]rune(r.Message)) > flows.MaxMessageLen {
			bad(at("message"), "at most %d characters", flows.MaxMessageLen)
		}
	}
}

// ApprovalTTL returns approvals.expire_after, or zero for the default.
func (p *Policy) ApprovalTTL() time.Duration {
	d, _ := ParseDuration(p.Approvals.ExpireAfter)
	return d
}

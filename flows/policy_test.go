package flows_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/flows"
)

func governedPolicy() flows.Policy {
	return flows.Policy{
		Admins:    []string{"UADMIN"},
		Inviters:  []string{"UANN", "UBEN", "UAPPR"},
		Approvers: []string{"UAPPR", "USEC"},
		Groups: []flows.Group{
			{Name: "Portal", ID: "g1"},
			{Name: "Finance", ID: "g2", Approvers: []string{"UFIN"}},
		},
		Domains: flows.DomainPolicy{
			Default: flows.DomainApprove,
			Rules: []flows.DomainRule{
				{Domain: "fabrikam.com", Action: flows.DomainAllow},
				{Domain: "*.fabrikam.com", Action: flows.DomainDeny, Reason: "Use the main domain."},
				{Domain: "partner.fabrikam.com", Action: flows.DomainAutoApprove},
				{Domain: "gmail.com", Action: flows.DomainDeny, Reason: "No personal addresses."},
				{Domain: "*.eu.contoso-partners.com", Action: flows.DomainAllow},
				{Domain: "*.contoso-partners.com", Action: flows.DomainApprove},
			},
		},
	}
}

func TestDecide(t *testing.T) {
	p := governedPolicy()
	tests := []struct {
		name, who, email string
		groups           []string
		denied           string // substring; "" = not denied
		approvers        []string
	}{
		{"AllowedDomain", "UANN", "bob@fabrikam.com", nil, "", nil},
		{"AllowedDomainCaseInsensitive", "UANN", "bob@FABRIKAM.com", nil, "", nil},
		{"AllowedDomainGroupWithApprover", "UANN", "bob@fabrikam.com", []string{"g2"}, "", []string{"UFIN"}},
		{"AllowedDomainGroupWithoutApprover", "UANN", "bob@fabrikam.com", []string{"g1"}, "", nil},
		{"SubdomainDeniedByWildcard", "UANN", "bob@sales.fabrikam.com", nil, "Use the main domain.", nil},
		{"ExactBeatsWildcard", "UANN", "bob@partner.fabrikam.com", nil, "", nil},
		{"AutoApproveSkipsGroupApprovers", "UANN", "bob@partner.fabrikam.com", []string{"g2"}, "", nil},
		{"DeniedWithReason", "UANN", "bob@gmail.com", nil, "Invitations to gmail.com are not allowed. No personal addresses.", nil},
		{"LongestWildcardWins", "UANN", "bob@x.eu.contoso-partners.com", nil, "", nil},
		{"ShorterWildcardApproves", "UANN", "bob@x.us.contoso-partners.com", nil, "", []string{"UAPPR", "USEC"}},
		{"DefaultApprove", "UANN", "bob@unknown.org", nil, "", []string{"UAPPR", "USEC"}},
		{"ApproversUnion", "UANN", "bob@unknown.org", []string{"g2"}, "", []string{"UAPPR", "UFIN", "USEC"}},
		{"RequesterNeverApprovesOwn", "UAPPR", "bob@unknown.org", nil, "", []string{"USEC"}},
		{"NotAnInviter", "UMALLORY", "bob@fabrikam.com", nil, "not among the people allowed", nil},
		{"AdminsMayInvite", "UADMIN", "bob@fabrikam.com", nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(flows.Request{Email: tt.email, Groups: tt.groups}, tt.who)
			switch {
			case tt.denied == "" && d.Denied != "":
				t.Errorf("denied: %q", d.Denied)
			case tt.denied != "" && !strings.Contains(d.Denied, tt.denied):
				t.Errorf("denied = %q, want it to contain %q", d.Denied, tt.denied)
			}
			if !slices.Equal(d.Approvers, tt.approvers) {
				t.Errorf("approvers = %v, want %v", d.Approvers, tt.approvers)
			}
		})
	}
}

func TestDecideOnlyApproverIsRequester(t *testing.T) {
	p := flows.Policy{Approvers: []string{"UANN"}, Domains: flows.DomainPolicy{Default: flows.DomainApprove}}
	d := p.Decide(flows.Request{Email: "bob@fabrikam.com"}, "UANN")
	if d.Denied == "" || !strings.Contains(d.Denied, "own request") {
		t.Errorf("decision = %+v, want a refusal: nobody else can approve", d)
	}
}

func TestDecideDefaultDenyAndApprovalFallsBackToAdmins(t *testing.T) {
	p := flows.Policy{Admins: []string{"UADMIN"}, Domains: flows.DomainPolicy{Default: flows.DomainDeny,
		Rules: []flows.DomainRule{{Domain: "fabrikam.com", Action: flows.DomainApprove}}}}
	if d := p.Decide(flows.Request{Email: "bob@contoso-partner.com"}, "UANN"); !strings.Contains(d.Denied, "not one of the partner domains") {
		t.Errorf("unlisted domain under default deny: %+v", d)
	}
	if d := p.Decide(flows.Request{Email: "bob@fabrikam.com"}, "UANN"); !slices.Equal(d.Approvers, []string{"UADMIN"}) {
		t.Errorf("approvers without approvals.approvers = %v, want the admins", d.Approvers)
	}
	if (flows.Policy{}).HasApprovals() || !p.HasApprovals() {
		t.Error("HasApprovals is wrong")
	}
}

func TestWithDomainDefaults(t *testing.T) {
	p := flows.Policy{DefaultRedirectURL: "https://myapplications.microsoft.com", Domains: flows.DomainPolicy{Rules: []flows.DomainRule{{
		Domain: "fabrikam.com", Action: flows.DomainAllow, UserType: flows.UserTypeMember, Groups: []string{"g1"},
		RedirectURL: "https://portal.contoso.com", Message: "Welcome, Fabrikam!",
	}}}}
	r := p.WithDomainDefaults(flows.Request{Email: "bob@fabrikam.com", RedirectURL: "https://myapplications.microsoft.com", Groups: []string{"g2"}})
	if r.RedirectURL != "https://portal.contoso.com" || r.Message != "Welcome, Fabrikam!" || r.UserType != flows.UserTypeMember ||
		!slices.Equal(r.Groups, []string{"g2", "g1"}) {
		t.Errorf("with defaults = %+v", r)
	}
	// What the inviter chose wins.
	r = p.WithDomainDefaults(flows.Request{Email: "bob@fabrikam.com", RedirectURL: "https://mine.example", Message: "Hi", Groups: []string{"g1"}})
	if r.RedirectURL != "https://mine.example" || r.Message != "Hi" || !slices.Equal(r.Groups, []string{"g1"}) {
		t.Errorf("the inviter's choices were overridden: %+v", r)
	}
	if r := p.WithDomainDefaults(flows.Request{Email: "bob@other.com"}); r.Message != "" || r.UserType != "" {
		t.Errorf("another domain got fabrikam's defaults: %+v", r)
	}
}

func TestExpandUserGroups(t *testing.T) {
	p := flows.Policy{Admins: []string{"UADMIN", "S0ADMINS"}, Inviters: []string{"S0SALES"},
		Groups: []flows.Group{{ID: "g1", Approvers: []string{"S0FIN"}}}}
	if got := p.UserGroups(); !slices.Equal(got, []string{"S0ADMINS", "S0SALES", "S0FIN"}) {
		t.Errorf("UserGroups = %v", got)
	}
	x := p.ExpandUserGroups(map[string][]string{"S0ADMINS": {"UBOSS", "UADMIN"}, "S0FIN": {"UCFO"}})
	if !x.IsAdmin("UBOSS") || !x.IsAdmin("UADMIN") || x.IsAdmin("S0ADMINS") {
		t.Errorf("admins = %v", x.Admins)
	}
	if x.MayInvite("USALES1") || !slices.Equal(x.Inviters, []string{"S0SALES"}) {
		t.Errorf("an unresolved group granted something: inviters %v", x.Inviters)
	}
	if e := p.ExpandUserGroups(map[string][]string{"S0SALES": {}}); e.MayInvite("UANYONE") {
		t.Error("an empty inviters group let everyone invite")
	}
	if !slices.Equal(x.Groups[0].Approvers, []string{"UCFO"}) || !slices.Equal(p.Groups[0].Approvers, []string{"S0FIN"}) {
		t.Errorf("group approvers = %v (original %v)", x.Groups[0].Approvers, p.Groups[0].Approvers)
	}
}

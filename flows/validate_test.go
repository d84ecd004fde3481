package flows_test

import (
	"strings"
	"testing"

	"github.com/invitebot/invitebot/flows"
)

func TestCheckEmail(t *testing.T) {
	tests := []struct {
		email string
		ok    bool
	}{
		{"bob@fabrikam.com", true},
		{"o'brien@fabrikam.com", true},
		{"first.last_x-y@sub.fabrikam.co.uk", true},
		{"bob@bücher.de", true}, // non-ASCII domain: Graph decides
		{"", false},
		{"bob", false},
		{"@fabrikam.com", false},
		{"bob@", false},
		{"bob@fabrikam", false},
		{"bob@@fabrikam.com", false},
		{"a@b@fabrikam.com", false},
		{"bob+tag@fabrikam.com", false}, // '+' is documented as not permitted
		{"bob smith@fabrikam.com", false},
		{"bob\n@fabrikam.com", false},
		{".bob@fabrikam.com", false},
		{"bob.@fabrikam.com", false},
		{"-bob@fabrikam.com", false},
		{"bo..b@fabrikam.com", false},
		{"bob@-fabrikam.com", false},
		{"bob@fab_rikam.com", false},
		{"<!channel>@fabrikam.com", false},
		{strings.Repeat("a", 65) + "@fabrikam.com", false},
		{strings.Repeat("a", 64) + "@fabrikam.com", true},
		{"bob@" + strings.Repeat("a", 250) + ".com", false},
	}
	for _, c := range "~!#$%^&*()+=[]{}\\/|;:\"<>?," {
		tests = append(tests, struct {
			email string
			ok    bool
		}{"b" + string(c) + "b@fabrikam.com", false})
	}
	for _, tt := range tests {
		got := flows.CheckEmail(tt.email)
		if (got == "") != tt.ok {
			t.Errorf("CheckEmail(%q) = %q, want ok=%v", tt.email, got, tt.ok)
		}
	}
}

func TestCheckRedirectURL(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"https://myapplications.microsoft.com", true},
		{"https://portal.fabrikam.com/welcome?x=1", true},
		{"", false},
		{"http://portal.fabrikam.com", false},
		{"javascript:alert(1)", false},
		{"https://", false},
		{"https://user:pw@portal.fabrikam.com", false},
		{"portal.fabrikam.com", false},
		{"https://" + strings.Repeat("a", 2100) + ".com", false},
	} {
		if got := flows.CheckRedirectURL(tt.url); (got == "") != tt.ok {
			t.Errorf("CheckRedirectURL(%q) = %q, want ok=%v", tt.url, got, tt.ok)
		}
	}
}

func validRequest() flows.Request {
	return flows.Request{
		Email: "bob@fabrikam.com", DisplayName: "Bob", RedirectURL: "https://myapplications.microsoft.com",
		Delivery: flows.DeliverySlackLink, UserType: flows.UserTypeGuest,
	}
}

func TestValidate(t *testing.T) {
	p := flows.Policy{Admins: []string{"UADMIN"}, Groups: []flows.Group{{Name: "Portal", ID: "g1"}}}
	domains := []string{"contoso.com"}
	tests := []struct {
		name  string
		admin bool
		edit  func(*flows.Request)
		want  []flows.Field
	}{
		{"OK", false, func(r *flows.Request) { r.Groups = []string{"g1"} }, nil},
		{"MalformedEmail", false, func(r *flows.Request) { r.Email = "bob" }, []flows.Field{flows.FieldEmail}},
		{"InternalDomain", false, func(r *flows.Request) { r.Email = "alice@contoso.com" }, []flows.Field{flows.FieldEmail}},
		{"InternalSubdomain", false, func(r *flows.Request) { r.Email = "alice@eu.contoso.com" }, []flows.Field{flows.FieldEmail}},
		{"LookalikeDomainIsExternal", false, func(r *flows.Request) { r.Email = "alice@notcontoso.com" }, nil},
		{"HTTPRedirect", false, func(r *flows.Request) { r.RedirectURL = "http://x.com" }, []flows.Field{flows.FieldRedirectURL}},
		{"LongDisplayName", false, func(r *flows.Request) { r.DisplayName = strings.Repeat("é", 257) }, []flows.Field{flows.FieldDisplayName}},
		{"LongMessage", false, func(r *flows.Request) { r.Message = strings.Repeat("x", 2001) }, []flows.Field{flows.FieldMessage}},
		{"BadCC", false, func(r *flows.Request) { r.CC = "nope" }, []flows.Field{flows.FieldCC}},
		{"BadDelivery", false, func(r *flows.Request) { r.Delivery = "pigeon" }, []flows.Field{flows.FieldDelivery}},
		{"MemberByNonAdmin", false, func(r *flows.Request) { r.UserType = flows.UserTypeMember }, []flows.Field{flows.FieldUserType}},
		{"MemberByAdmin", true, func(r *flows.Request) { r.UserType = flows.UserTypeMember }, nil},
		{"UnknownGroup", false, func(r *flows.Request) { r.Groups = []string{"forged"} }, []flows.Field{flows.FieldGroups}},
		{"LongJobTitle", false, func(r *flows.Request) { r.Attributes.JobTitle = strings.Repeat("x", 129) }, []flows.Field{flows.FieldJobTitle}},
		{"Several", false, func(r *flows.Request) { r.Email = ""; r.RedirectURL = "" }, []flows.Field{flows.FieldEmail, flows.FieldRedirectURL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.edit(&r)
			errs := flows.Validate(r, tt.admin, p, domains)
			if len(errs) != len(tt.want) {
				t.Fatalf("Validate = %v, want errors on %v", errs, tt.want)
			}
			for _, f := range tt.want {
				if errs[f] == "" {
					t.Errorf("no error on %s; got %v", f, errs)
				}
			}
		})
	}
}

func TestValidateWithoutDomainsAcceptsAnyDomain(t *testing.T) {
	r := validRequest()
	r.Email = "alice@contoso.com"
	if errs := flows.Validate(r, false, flows.Policy{}, nil); errs != nil {
		t.Fatalf("Validate = %v, want nil (domains unknown: checked again before inviting)", errs)
	}
}

func TestNormalize(t *testing.T) {
	r := flows.Request{Email: "  bob@fabrikam.com ", Message: " hi "}.Normalize(flows.Policy{DefaultRedirectURL: "https://x.example"})
	if r.Email != "bob@fabrikam.com" || r.Message != "hi" || r.RedirectURL != "https://x.example" ||
		r.Delivery != flows.DeliverySlackLink || r.UserType != flows.UserTypeGuest {
		t.Errorf("Normalize = %+v", r)
	}
}

package flows_test

import (
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/invitebot/invitebot/flows"
)

// forbiddenLocal are the characters Graph refuses before the @ of an
// invited address (reference/graph.md §2.1).
const forbiddenLocal = "~!#$%^&*()+=[]{}\\/|;:\"<>?,"

// checkAccepted fails t unless an address CheckEmail accepted has exactly
// one @, no whitespace or control characters, and none of Graph's
// forbidden characters before the @.
func checkAccepted(t *testing.T, email string) {
	t.Helper()
	if n := strings.Count(email, "@"); n != 1 {
		t.Fatalf("CheckEmail accepted %q with %d @", email, n)
	}
	if i := strings.IndexFunc(email, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		t.Fatalf("CheckEmail accepted %q with whitespace or a control character at byte %d", email, i)
	}
	local := email[:strings.IndexByte(email, '@')]
	if i := strings.IndexAny(local, forbiddenLocal); i >= 0 {
		t.Fatalf("CheckEmail accepted %q with forbidden %q before the @", email, local[i])
	}
	if len(email) > flows.MaxEmailLen || len(local) > flows.MaxLocalPartLen {
		t.Fatalf("CheckEmail accepted %q of %d bytes (local part %d)", email, len(email), len(local))
	}
}

func FuzzCheckEmail(f *testing.F) {
	for _, s := range []string{
		"bob@contoso.com", "", "@", "a@b", "a@b.c", "bob@@contoso.com", "b@b@contoso.com",
		"bob smith@contoso.com", "bob\t@contoso.com", "bob@contoso.com\n", "bob\x7f@contoso.com",
		"<bob@contoso.com>", "bob!@contoso.com", "o'brien@contoso.com", ".bob@contoso.com", "bob.@contoso.com",
		"bo..b@contoso.com", "bob@-contoso.com", "bob@contoso..com", "bob@contoso.com.", "bob@xn--bcher-kva.example",
		"jörg@bücher.de", "bob@con_toso.com", strings.Repeat("a", 65) + "@contoso.com",
		"bob@" + strings.Repeat("a", 64) + ".com", "\xff@contoso.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, email string) {
		if flows.CheckEmail(email) == "" {
			checkAccepted(t, email)
		}
	})
}

func FuzzCheckRedirectURL(f *testing.F) {
	for _, s := range []string{
		"https://myapplications.microsoft.com", "", "http://x.example", "https://", "https:x.example",
		"https://user:pw@x.example/", "javascript:alert(1)", "https://x.example/%zz", "//x.example",
		"HTTPS://X.EXAMPLE", "https://[::1]:443/a?b#c", "https://x.example\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if flows.CheckRedirectURL(raw) != "" {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || len(raw) > flows.MaxRedirectURLLen {
			t.Fatalf("CheckRedirectURL accepted %q (parsed %#v, err %v)", raw, u, err)
		}
	})
}

func FuzzValidate(f *testing.F) {
	f.Add("bob@contoso.com", "Bob", "https://x.example", "", "", "slack_link", "Guest", "g1", int64(0), false)
	f.Add("bob@ourcompany.com", "<!channel>", "http://x", "cc", "hi", "email", "Member", "nope", int64(-1), true)
	f.Add("bob@sub.OurCompany.com", "", "https://x.example", "carol@x.com", "", "microsoft_email", "", "", int64(1<<62), false)
	f.Fuzz(func(t *testing.T, email, name, redirect, cc, msg, delivery, userType, group string, expires int64, admin bool) {
		p := flows.Policy{Groups: []flows.Group{{Name: "Portal", ID: "g1"}}, DefaultRedirectURL: "https://x.example"}
		r := flows.Request{Email: email, DisplayName: name, RedirectURL: redirect, CC: cc, Message: msg,
			Delivery: flows.Delivery(delivery), UserType: flows.UserType(userType), ExpiresIn: time.Duration(expires)}
		if group != "" {
			r.Groups = []string{group}
		}
		domains := []string{"ourcompany.com"}
		for _, req := range []flows.Request{r, r.Normalize(p), p.WithDomainDefaults(r)} {
			if errs := flows.Validate(req, admin, p, domains); errs == nil {
				if flows.CheckEmail(req.Email) != "" || flows.CheckRedirectURL(req.RedirectURL) != "" {
					t.Fatalf("Validate accepted %+v", req)
				}
				checkAccepted(t, req.Email)
				if flows.IsInternal(req.Email, domains) {
					t.Fatalf("Validate accepted internal address %q", req.Email)
				}
			}
		}
	})
}

// FuzzDecide: Decide never panics, and a deny rule on the request's exact
// domain always denies, whatever the other rules and the default say.
func FuzzDecide(f *testing.F) {
	f.Add("bob@fabrikam.com", "*.com", "allow", "allow", "g1")
	f.Add("bob@Sub.Fabrikam.com", "sub.fabrikam.com", "auto_approve", "approve", "")
	f.Add("bob@x", "*.x", "approve", "deny", "g2")
	f.Add("no-at-sign", "", "auto_approve", "", "")
	f.Add("a@b@C.example", "*.example", "auto_approve", "auto_approve", "g1")
	f.Add("bob@İstanbul.example", "*.i̇stanbul.example", "allow", "", "")
	f.Fuzz(func(t *testing.T, email, other, otherAction, defaultAction, group string) {
		domain := flows.Domain(email)
		p := flows.Policy{
			Admins:    []string{"UADMIN"},
			Approvers: []string{"UAPPROVER"},
			Groups:    []flows.Group{{Name: "Portal", ID: "g1", Approvers: []string{"UINVITER"}}, {Name: "Wiki", ID: "g2", Approvers: []string{"UOTHER"}}},
			Domains: flows.DomainPolicy{Default: flows.DomainAction(defaultAction), Rules: []flows.DomainRule{
				{Domain: other, Action: flows.DomainAction(otherAction)},
				{Domain: domain, Action: flows.DomainDeny, Reason: "no"},
			}},
		}
		r := flows.Request{Email: email, Groups: []string{group}}
		for _, inviter := range []string{"UINVITER", "UADMIN", "UAPPROVER"} {
			d := p.Decide(r, inviter)
			_ = p.WithDomainDefaults(r)
			if strings.ToLower(other) == domain {
				continue // two rules for one domain: the policy file refuses that
			}
			if d.Denied == "" || d.Rule == nil || d.Rule.Action != flows.DomainDeny {
				t.Fatalf("deny rule on %q did not deny %q (other rule %q %q, default %q): %+v", domain, email, other, otherAction, defaultAction, d)
			}
		}
		// A wildcard deny rule alone denies every subdomain.
		w := flows.Policy{Domains: flows.DomainPolicy{Default: flows.DomainAction(defaultAction),
			Rules: []flows.DomainRule{{Domain: "*." + domain, Action: flows.DomainDeny}}}}
		if d := w.Decide(flows.Request{Email: "x@sub." + domain}, "UINVITER"); d.Denied == "" {
			t.Fatalf("rule *.%s did not deny x@sub.%s: %+v", domain, domain, d)
		}
	})
}

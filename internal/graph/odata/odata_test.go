package odata_test

import (
	"testing"

	"github.com/invitebot/invitebot/internal/graph/odata"
	"github.com/invitebot/invitebot/internal/graphfake"
)

func TestFilterByEmail(t *testing.T) {
	got := odata.FilterByEmail("o'brien@x.com", true)
	want := "mail eq 'o''brien@x.com' or otherMails/any(x:x eq 'o''brien@x.com') or proxyAddresses/any(x:x eq 'smtp:o''brien@x.com') or userPrincipalName eq 'o''brien@x.com'"
	if got != want {
		t.Errorf("FilterByEmail =\n%s\nwant\n%s", got, want)
	}
	if got, want := odata.FilterByEmail("a@x.com", false), "mail eq 'a@x.com' or otherMails/any(x:x eq 'a@x.com') or proxyAddresses/any(x:x eq 'smtp:a@x.com')"; got != want {
		t.Errorf("FilterByEmail without UPN =\n%s\nwant\n%s", got, want)
	}
}

// FuzzFilterByEmail checks that no input changes the filter's structure:
// it always parses into the same clauses, each holding the input. This
// package does not link the Graph SDK, so `go test -fuzz FuzzFilterByEmail
// ./internal/graph/odata` starts fuzzing within seconds.
func FuzzFilterByEmail(f *testing.F) {
	for _, s := range []string{"bob@x.com", "o'brien@x.com", "' or 1 eq 1 or mail eq '", "a'')(x", "''''", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, email string) {
		clauses, err := graphfake.ParseFilter(odata.FilterByEmail(email, true))
		if err != nil {
			t.Fatalf("filter for %q does not parse: %v", email, err)
		}
		if len(clauses) != 4 {
			t.Fatalf("filter for %q has %d clauses, want 4", email, len(clauses))
		}
		for i, c := range clauses {
			want := email
			if c.Property == "proxyAddresses" {
				want = "smtp:" + email
			}
			if c.Value != want || c.Property != []string{"mail", "otherMails", "proxyAddresses", "userPrincipalName"}[i] {
				t.Fatalf("clause %d = %+v for %q", i, c, email)
			}
		}
	})
}

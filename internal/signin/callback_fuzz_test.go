package signin_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/internal/signin"
)

// FuzzParseCallback: any query either is refused or yields a state and
// exactly one of a code and an error, each as the query carried it once.
func FuzzParseCallback(f *testing.F) {
	for _, s := range []string{"code=abc&state=xyz", "error=access_denied&error_description=AADSTS65004%3A+no&state=s",
		"code=a&code=b&state=s", "state=s", "code=a&error=b&state=s", "%zz", "code=%E2%80%AE&state=%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		cb, err := signin.ParseCallback(raw)
		if err != nil {
			if strings.Contains(err.Error(), raw) && len(raw) > 8 {
				t.Errorf("the error quotes the query: %v", err)
			}
			return
		}
		q, perr := url.ParseQuery(raw)
		if perr != nil {
			t.Fatalf("accepted a query url.ParseQuery refuses: %q", raw)
		}
		if cb.State == "" || (cb.Code == "") == (cb.Error == "") {
			t.Fatalf("accepted %q as %+v", raw, cb)
		}
		if len(q["code"]) > 1 || len(q["state"]) > 1 || cb.State != q.Get("state") || cb.Code != q.Get("code") {
			t.Fatalf("%q parsed as %+v", raw, cb)
		}
	})
}

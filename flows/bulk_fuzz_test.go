package flows_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/invitebot/invitebot/flows"
)

// FuzzParseBulk: whatever the file, ParseBulk either refuses it as a whole
// (ErrBulkRefused) or accounts for its rows: each well-formed row has an
// address CheckEmail accepts, groups the policy offers and a line inside
// the file; no address appears twice; malformed rows say why.
func FuzzParseBulk(f *testing.F) {
	for _, s := range []string{
		bulkCSV,
		"email\nbob@fabrikam.com\n",
		"\xef\xbb\xbfEmail,Display Name\r\nbob@fabrikam.com,\"Bob, \"\"B\"\"\"\r\n",
		"sep=;\nemail;groups\nbob@fabrikam.com;\"Portal;Wiki\"\n",
		"version:v1.0\nEmail address to invite [inviteeEmail] Required\nbob@fabrikam.com\n",
		"email,,name\nbob@fabrikam.com,,Bob\nann@fabrikam.com,x,Ann\n",
		"email,display name\nbob@fabrikam.com,\"Bob\nann@fabrikam.com,Ann\n",
		"email\n\n\nbob@fabrikam.com\nBOB@fabrikam.com\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := flows.ParseBulk(bytes.NewReader(data), "f.csv", flows.BulkLimits{MaxRows: 50}, bulkPolicy)
		if err != nil {
			if !errors.Is(err, flows.ErrBulkRefused) {
				t.Fatalf("error is not a refusal: %v", err)
			}
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		seen := map[string]bool{}
		for _, r := range file.Rows {
			if msg := flows.CheckEmail(r.Request.Email); msg != "" {
				t.Fatalf("line %d: accepted %q: %s", r.Line, r.Request.Email, msg)
			}
			if r.Line < 2 || r.Line > lines {
				t.Fatalf("row at line %d of a %d-line file", r.Line, lines)
			}
			key := flows.NormalizeEmail(r.Request.Email)
			if seen[key] {
				t.Fatalf("%q twice", r.Request.Email)
			}
			seen[key] = true
			for _, g := range r.Request.Groups {
				if !slices.ContainsFunc(bulkPolicy.Groups, func(pg flows.Group) bool { return pg.ID == g }) {
					t.Fatalf("line %d: group %q not offered", r.Line, g)
				}
			}
		}
		for _, m := range file.Malformed {
			if m.Outcome != flows.BulkMalformed || strings.TrimSpace(m.Reason) == "" || m.Line < 1 || m.Line > lines {
				t.Fatalf("malformed %+v in a %d-line file", m, lines)
			}
		}
		if file.Total() == 0 || file.Total() > 50 {
			t.Fatalf("%d rows accepted with a limit of 50", file.Total())
		}
		// Without quotes, CR or a first line other than a comma header,
		// every non-blank line after the header is a row, counted here
		// independently of the CSV reader.
		lns := strings.Split(string(data), "\n")
		if !bytes.ContainsAny(data, "\"\r") && strings.Contains(lns[0], ",") && !strings.HasPrefix(strings.ToLower(lns[0]), "version:") {
			want := 0
			for _, l := range lns[1:] {
				if strings.TrimSpace(strings.ReplaceAll(l, ",", "")) != "" {
					want++
				}
			}
			if file.Total() != want {
				t.Fatalf("%d rows accounted for, %d non-blank lines after the header", file.Total(), want)
			}
		}
	})
}

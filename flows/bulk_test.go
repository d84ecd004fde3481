package flows_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/invitebot/invitebot/flows"
)

var bulkPolicy = flows.Policy{
	Groups:             []flows.Group{{Name: "Portal", ID: "g1"}, {Name: "Wiki", ID: "g2"}},
	DefaultRedirectURL: "https://myapplications.microsoft.com",
}

func parse(t *testing.T, csv string) *flows.BulkFile {
	t.Helper()
	f, err := flows.ParseBulk(strings.NewReader(csv), "guests.csv", flows.BulkLimits{}, bulkPolicy)
	if err != nil {
		t.Fatalf("ParseBulk: %v", err)
	}
	return f
}

func TestParseBulk(t *testing.T) {
	f := parse(t, "\xef\xbb\xbfEmail,Display Name,redirect_url,Send-Microsoft-Email,message,groups\n"+
		"bob@fabrikam.com,Bob,https://portal.example,true,Hi,Portal;g2\n"+
		"\n"+ // blank lines are skipped, but counted in line numbers
		"ann@northwind.com,\"Ann, PhD\",,false,\"two\nlines\",\n"+
		"cat@litware.com,Cat,,,,\n")
	if len(f.Malformed) != 0 || len(f.Rows) != 3 {
		t.Fatalf("rows = %+v, malformed = %+v", f.Rows, f.Malformed)
	}
	bob := f.Rows[0]
	if bob.Line != 2 || bob.Request.Email != "bob@fabrikam.com" || bob.Request.DisplayName != "Bob" ||
		bob.Request.RedirectURL != "https://portal.example" || bob.Request.Delivery != flows.DeliveryMicrosoftEmail ||
		bob.Request.Message != "Hi" || !slices.Equal(bob.Request.Groups, []string{"g1", "g2"}) {
		t.Errorf("bob = %+v", bob)
	}
	ann := f.Rows[1]
	if ann.Line != 4 || ann.Request.DisplayName != "Ann, PhD" || ann.Request.Delivery != flows.DeliverySlackLink || ann.Request.Message != "two\nlines" {
		t.Errorf("ann = %+v", ann)
	}
	if cat := f.Rows[2]; cat.Line != 6 || cat.Request.Delivery != "" {
		t.Errorf("cat = %+v (line 6: after the two-line field; delivery left to the policy)", cat)
	}
	if bob.Key == ann.Key || bob.Key == "" {
		t.Errorf("keys %q %q", bob.Key, ann.Key)
	}
}

// Microsoft's bulk-invite template: a version line, then headers with the
// API names in brackets.
func TestParseBulkMicrosoftTemplate(t *testing.T) {
	f := parse(t, "version:v1.0\n"+
		"Email address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required,Send invitation message (true or false) [sendEmail],Customized invitation message [customizedMessageBody]\n"+
		"bob@fabrikam.com,https://myapps.microsoft.com,true,Welcome\n")
	if len(f.Rows) != 1 {
		t.Fatalf("rows = %+v, malformed = %+v", f.Rows, f.Malformed)
	}
	if r := f.Rows[0]; r.Line != 3 || r.Request.RedirectURL != "https://myapps.microsoft.com" || r.Request.Delivery != flows.DeliveryMicrosoftEmail || r.Request.Message != "Welcome" {
		t.Errorf("row = %+v", r)
	}
}

func TestParseBulkMalformedRows(t *testing.T) {
	f := parse(t, "email,display name,send microsoft email,groups\n"+
		"good@fabrikam.com,Good,,\n"+ // 2
		",No address,,\n"+ // 3
		"not-an-address,X,,\n"+ // 4
		"x@fabrikam.org,X,maybe,\n"+ // 5
		"y@fabrikam.org,Y,,Secret\n"+ // 6
		"GOOD@fabrikam.com,Again,,\n"+ // 7
		"z@fabrikam.org,Z,,,extra\n"+ // 8
		"q@fabrikam.org,\"bad\"quote,,\n"+ // 9
		"ok@fabrikam.org,,,\n") // 10
	want := map[int]string{
		3: "the email is empty",
		4: "email:",
		5: `send microsoft email must be true or false, not "maybe"`,
		6: `group "Secret" is not one the policy offers`,
		7: "the same address as line 2",
		8: `field 5 ("extra") is under no named column`,
		9: "not valid CSV",
	}
	got := map[int]string{}
	for _, m := range f.Malformed {
		if m.Outcome != flows.BulkMalformed {
			t.Errorf("line %d outcome %s", m.Line, m.Outcome)
		}
		got[m.Line] = m.Reason
	}
	for line, w := range want {
		if !strings.Contains(got[line], w) {
			t.Errorf("line %d: reason %q, want it to contain %q", line, got[line], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("malformed = %v", got)
	}
	var lines []int
	for _, r := range f.Rows {
		lines = append(lines, r.Line)
	}
	if !slices.Equal(lines, []int{2, 10}) {
		t.Errorf("good rows at lines %v, want [2 10]", lines)
	}
}

func TestParseBulkRefused(t *testing.T) {
	rows := "email\n" + strings.Repeat("a@fabrikam.org\n", 1)
	for _, tc := range []struct {
		name, csv string
		lim       flows.BulkLimits
		want      string
	}{
		{"empty", "", flows.BulkLimits{}, "the file is empty"},
		{"header only", "email,groups\n", flows.BulkLimits{}, "no rows"},
		{"no email column", "name,groups\nBob,\n", flows.BulkLimits{}, `line 1: there is no "email" column`},
		{"unknown column", "email,gruops\nb@fabrikam.org,x\n", flows.BulkLimits{}, `line 1: unknown column "gruops"`},
		{"twice", "email,mail\nb@fabrikam.org,c@fabrikam.org\n", flows.BulkLimits{}, `column "email" appears twice`},
		{"too big", rows, flows.BulkLimits{MaxBytes: 10}, "larger than 10 bytes"},
		{"too many rows", "email\na@fabrikam.org\nb@fabrikam.org\nc@fabrikam.org\n", flows.BulkLimits{MaxRows: 2}, "more than 2 rows"},
		{"quote never closed", "email,display name\nbob@fabrikam.com,\"Bob\nann@fabrikam.com,Ann\n", flows.BulkLimits{}, "line 2: a quoted field runs from there to the end of the file (line 3)"},
		{"not UTF-8 (Windows-1252)", "email,display name\nbob@fabrikam.com,Bob\ncarol@fabrikam.com,Carol D\xedaz\n", flows.BulkLimits{}, `line 3 is not UTF-8 text: save the file as "CSV UTF-8"`},
		{"too many rows, malformed ones count", "email\na@fabrikam.org\nnope\nc@fabrikam.org\n", flows.BulkLimits{MaxRows: 2}, "more than 2 rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := flows.ParseBulk(strings.NewReader(tc.csv), "f.csv", tc.lim, bulkPolicy)
			if !errors.Is(err, flows.ErrBulkRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrBulkRefused containing %q", err, tc.want)
			}
		})
	}
}

// bulkRun parses csv and runs it as the test inviter.
func (e *env) bulkRun(t *testing.T, csv string, opt flows.BulkOptions) []flows.BulkResult {
	t.Helper()
	f, err := flows.ParseBulk(strings.NewReader(csv), "guests.csv", flows.BulkLimits{}, e.svc.Policy())
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.RunBulk(t.Context(), inviter, f, opt)
	if err != nil {
		t.Fatalf("RunBulk: %v", err)
	}
	e.svc.Wait()
	return res
}

func byLine(res []flows.BulkResult) map[int]flows.BulkResult {
	m := map[int]flows.BulkResult{}
	for _, r := range res {
		m[r.Line] = r
	}
	return m
}

const bulkCSV = "email,display name,send microsoft email,groups\n" +
	"bob@fabrikam.com,Bob,true,Portal\n" + // 2: Microsoft's email
	"ann@northwind.com,Ann,false,Wiki\n" + // 3: Slack link
	"eve@contoso.com,Eve,true,\n" + // 4: internal domain: rejected
	"old@litware.com,Old,true,Portal;Wiki\n" + // 5: already a guest
	"bad,Bad,,\n" // 6: malformed

func TestRunBulk(t *testing.T) {
	e := newEnv(t)
	e.dir.AddUser(flows.DirectoryUser{ID: "u-old", Mail: "old@litware.com", UserType: flows.UserTypeGuest, ExternalUserState: "Accepted"})
	var progress []int
	res := e.bulkRun(t, bulkCSV, flows.BulkOptions{Progress: func(r flows.BulkResult) { progress = append(progress, r.Line) }})
	got := byLine(res)
	if len(res) != 5 || len(progress) != 5 {
		t.Fatalf("results = %+v, progress = %v", res, progress)
	}
	if !slices.IsSortedFunc(res, func(a, b flows.BulkResult) int { return a.Line - b.Line }) {
		t.Errorf("results not in line order: %+v", res)
	}
	for line, want := range map[int]flows.BulkOutcome{2: flows.BulkInvited, 3: flows.BulkInvited, 4: flows.BulkRejected, 5: flows.BulkExisting, 6: flows.BulkMalformed} {
		if got[line].Outcome != want {
			t.Errorf("line %d: %+v, want %s", line, got[line], want)
		}
	}
	if r := got[4]; !strings.Contains(r.Reason, "email: contoso.com is one of your organisation's own domains") {
		t.Errorf("rejected reason = %q", r.Reason)
	}
	if got[5].ObjectID != "u-old" || got[2].ObjectID == "" || got[2].InvitationID == "" {
		t.Errorf("object IDs: %+v %+v", got[2], got[5])
	}
	if e.dir.Count("Invite") != 2 {
		t.Errorf("Invite calls = %d, want 2 (the existing guest is adopted, not re-invited)", e.dir.Count("Invite"))
	}
	if m := e.dir.GroupMembers("g2"); !slices.Contains(m, "u-old") || !slices.Contains(m, got[3].ObjectID) {
		t.Errorf("Wiki members = %v", m)
	}
	// One DM: the Slack-link row's redeem link. Microsoft-email and adopted
	// rows are reported in the results; no progress notices for bulk rows.
	if ks := e.note.Notices(); len(ks) != 1 || ks[0].Kind != flows.NoticeDone || ks[0].Invitation.Request.Email != "ann@northwind.com" {
		t.Errorf("notices = %v", ks)
	}
	g, err := e.store.Guest(t.Context(), "u-old")
	if err != nil || !g.Existing || !slices.Equal(g.Groups, []string{"g1", "g2"}) {
		t.Errorf("adopted guest = %+v, %v", g, err)
	}
	inv, _ := e.store.Invitation(t.Context(), got[2].InvitationID)
	if inv.Origin.Kind != flows.OriginBulk || inv.Origin.Name != "guests.csv line 2" || !strings.Contains(inv.History[0].Detail, "bulk=guests.csv line 2") {
		t.Errorf("invitation bulk = %q, history %+v", inv.Origin.Name, inv.History[0])
	}

	// The same file again: nothing is sent twice.
	again := byLine(e.bulkRun(t, bulkCSV, flows.BulkOptions{}))
	if e.dir.Count("Invite") != 2 {
		t.Errorf("Invite calls after the re-run = %d, want still 2", e.dir.Count("Invite"))
	}
	for _, line := range []int{2, 3, 5} {
		if r := again[line]; !r.Earlier || r.Outcome != got[line].Outcome || r.InvitationID != got[line].InvitationID || !strings.HasPrefix(r.Reason, "done in an earlier run") {
			t.Errorf("re-run line %d = %+v", line, r)
		}
	}
	if again[4].Outcome != flows.BulkRejected || again[6].Outcome != flows.BulkMalformed {
		t.Errorf("re-run 4, 6 = %+v %+v", again[4], again[6])
	}
	if n := len(e.note.Notices()); n != 1 {
		t.Errorf("notices after the re-run = %d, want still 1", n)
	}
}

// A row whose address matches accounts a person must choose between fails
// with what it matched, and nothing is sent.
func TestRunBulkAmbiguous(t *testing.T) {
	e := newEnv(t)
	e.dir.AddUser(flows.DirectoryUser{ID: "u1", Mail: "two@fabrikam.com", UserType: flows.UserTypeGuest})
	e.dir.AddUser(flows.DirectoryUser{ID: "u2", Mail: "two@fabrikam.com", UserType: flows.UserTypeMember})
	e.dir.AddUser(flows.DirectoryUser{ID: "u3", Mail: "member@fabrikam.com", UserType: flows.UserTypeMember})
	res := byLine(e.bulkRun(t, "email\ntwo@fabrikam.com\nmember@fabrikam.com\n", flows.BulkOptions{}))
	for line, want := range map[int]string{2: "2 existing account(s) (guest, member)", 3: "1 existing account(s) (member)"} {
		r := res[line]
		if r.Outcome != flows.BulkFailed || r.Failure == nil || r.Failure.Code != flows.FailNeedsPick || !strings.Contains(r.Failure.Message, want) {
			t.Errorf("line %d = %+v (failure %+v)", line, r, r.Failure)
		}
	}
	if e.dir.Count("Invite") != 0 || len(e.note.Notices()) != 0 {
		t.Errorf("invites %d, notices %v: want none", e.dir.Count("Invite"), e.note.Notices())
	}
}

// A row that failed is tried again by the next run; rows that succeeded
// are not.
func TestRunBulkRetriesFailedRows(t *testing.T) {
	e := newEnv(t)
	fail := true
	var mu sync.Mutex
	e.dir.InviteFunc = func(ctx context.Context, inv flows.Invite) (flows.Invited, error) {
		mu.Lock()
		f := fail && inv.Email == "ann@northwind.com"
		mu.Unlock()
		if f {
			return flows.Invited{}, &flows.DirectoryError{Op: "invite", Status: http.StatusBadRequest, Code: "BadRequest", Message: "no"}
		}
		return e.dir.DefaultInvite(ctx, inv)
	}
	csv := "email,send microsoft email\nbob@fabrikam.com,true\nann@northwind.com,true\n"
	first := byLine(e.bulkRun(t, csv, flows.BulkOptions{}))
	if first[2].Outcome != flows.BulkInvited || first[3].Outcome != flows.BulkFailed || first[3].Failure.Code != flows.FailRejected {
		t.Fatalf("first run = %+v", first)
	}
	var buf bytes.Buffer
	if err := flows.WriteBulkResults(&buf, []flows.BulkResult{first[3]}, func(f *flows.Failure) string { return "Graph: " + f.Message }); err != nil {
		t.Fatal(err)
	}
	if want := "row,email,object_id,outcome,reason\n3,ann@northwind.com,,failed,Graph: no\n"; buf.String() != want {
		t.Errorf("results csv = %q, want %q", buf.String(), want)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	second := byLine(e.bulkRun(t, csv, flows.BulkOptions{}))
	// The POST had reached Graph: the row carries on on the same record.
	if !second[2].Earlier || second[3].Outcome != flows.BulkInvited || second[3].Earlier || second[3].InvitationID != first[3].InvitationID {
		t.Errorf("second run = %+v", second)
	}
	if n := e.dir.Count("Invite"); n != 3 {
		t.Errorf("Invite calls = %d, want 3 (bob once, ann twice)", n)
	}
}

// A run stopped mid-way (the service closes, as on SIGTERM) reports the
// unfinished rows interrupted; after a restart, the next run finishes them
// without inviting anyone twice.
func TestRunBulkResumesAfterStop(t *testing.T) {
	e := newEnv(t)
	inflight := make(chan struct{}, 1)
	release := make(chan struct{})
	e.dir.InviteFunc = func(ctx context.Context, inv flows.Invite) (flows.Invited, error) {
		if inv.Email == "ann@northwind.com" {
			select {
			case inflight <- struct{}{}:
			default:
			}
			select {
			case <-ctx.Done():
				return flows.Invited{}, ctx.Err()
			case <-release:
			}
		}
		return e.dir.DefaultInvite(ctx, inv)
	}
	csv := "email,send microsoft email\nbob@fabrikam.com,true\nann@northwind.com,true\n"
	f := parse(t, csv)
	done := make(chan []flows.BulkResult)
	go func() {
		res, _ := e.svc.RunBulk(context.Background(), inviter, f, flows.BulkOptions{Concurrency: 2})
		done <- res
	}()
	<-inflight
	e.svc.Close() // SIGTERM: the run for ann stops with its state recorded
	res := byLine(<-done)
	if res[3].Outcome != flows.BulkInterrupted || !strings.Contains(res[3].Reason, "run the file again") {
		t.Fatalf("ann after the stop = %+v", res[3])
	}
	close(release)
	inv, _ := e.store.Invitation(t.Context(), res[3].InvitationID)
	if inv == nil || inv.State != flows.StateInviting {
		t.Fatalf("ann's record = %+v, want inviting", inv)
	}
	e.svc = e.start(t) // the restart resumes ann's invitation
	again := byLine(e.bulkRun(t, csv, flows.BulkOptions{}))
	if again[3].Outcome != flows.BulkInvited || again[3].InvitationID != res[3].InvitationID || again[2].Outcome != flows.BulkInvited {
		t.Errorf("after the restart = %+v", again)
	}
	if n := e.dir.Count("Invite"); n != 3 {
		t.Errorf("Invite calls = %d, want 3 (bob once, ann's cut-off attempt and its resumption)", n)
	}
}

// Rows are processed concurrently, up to Concurrency and no further.
func TestRunBulkConcurrency(t *testing.T) {
	e := newEnv(t)
	const limit, rows = 4, 12
	var (
		mu          sync.Mutex
		now, maxNow int
		arrived     = make(chan struct{}, rows)
		gate        = make(chan struct{})
	)
	e.dir.InviteFunc = func(ctx context.Context, inv flows.Invite) (flows.Invited, error) {
		mu.Lock()
		now++
		maxNow = max(maxNow, now)
		mu.Unlock()
		arrived <- struct{}{}
		<-gate
		mu.Lock()
		now--
		mu.Unlock()
		return e.dir.DefaultInvite(ctx, inv)
	}
	var b strings.Builder
	b.WriteString("email,send microsoft email\n")
	for i := range rows {
		fmt.Fprintf(&b, "g%d@fabrikam.com,true\n", i)
	}
	done := make(chan []flows.BulkResult)
	go func() { done <- e.bulkRun(t, b.String(), flows.BulkOptions{Concurrency: limit}) }()
	for range limit { // all four in flight at once: concurrency reached
		<-arrived
	}
	close(gate)
	res := <-done
	if s := flows.Summarize(res); s[flows.BulkInvited] != rows {
		t.Errorf("summary = %v", s)
	}
	if maxNow != limit {
		t.Errorf("at most %d invitations in flight, want %d", maxNow, limit)
	}
}

func TestRunBulkNotAllowed(t *testing.T) {
	e := newEnv(t)
	p := e.svc.Policy()
	p.Inviters = []string{"USOMEONE"}
	e.svc.SetPolicy(p)
	_, err := e.svc.RunBulk(t.Context(), inviter, parse(t, "email\nbob@fabrikam.com\n"), flows.BulkOptions{})
	if !errors.Is(err, flows.ErrNotAuthorized) || e.dir.Count("FindUsers") != 0 {
		t.Errorf("err = %v, finds = %d", err, e.dir.Count("FindUsers"))
	}
}

func TestWriteBulkResultsDefusesFormulas(t *testing.T) {
	var buf bytes.Buffer
	err := flows.WriteBulkResults(&buf, []flows.BulkResult{{Line: 2, Email: "a@b.c", Outcome: flows.BulkRejected, Reason: "=HYPERLINK(1)"}}, nil)
	if err != nil || !strings.Contains(buf.String(), ",'=HYPERLINK(1)\n") {
		t.Errorf("csv = %q, %v", buf.String(), err)
	}
	if s := (flows.BulkSummary{flows.BulkInvited: 2, flows.BulkFailed: 1}).String(); s != "2 invited, 1 failed" {
		t.Errorf("summary = %q", s)
	}
}

// Spreadsheets' ways of writing CSV: Excel's "sep=" line, ";" as the
// separator in some locales, and empty columns.
func TestParseBulkSpreadsheetDialects(t *testing.T) {
	for name, csv := range map[string]string{
		"sep line":       "sep=;\nemail;display name;groups\nbob@fabrikam.com;Bob;\"Portal;Wiki\"\n",
		"semicolons":     "email;display name;groups\nbob@fabrikam.com;Bob;\"Portal;Wiki\"\n",
		"empty columns":  "email,,display name,groups,,\nbob@fabrikam.com,,Bob,Portal;Wiki,,\n",
		"CRLF line ends": "email,display name,groups\r\nbob@fabrikam.com,Bob,Portal;Wiki\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			f := parse(t, csv)
			if len(f.Rows) != 1 || len(f.Malformed) != 0 {
				t.Fatalf("rows %+v, malformed %+v", f.Rows, f.Malformed)
			}
			r := f.Rows[0]
			if r.Request.Email != "bob@fabrikam.com" || r.Request.DisplayName != "Bob" || !slices.Equal(r.Request.Groups, []string{"g1", "g2"}) {
				t.Errorf("row = %+v", r)
			}
		})
	}
	f := parse(t, "email,,display name\nbob@fabrikam.com,oops,Bob\n"+"ann@fabrikam.com,,Ann\n")
	if len(f.Malformed) != 1 || f.Malformed[0].Line != 2 || !strings.Contains(f.Malformed[0].Reason, `field 2 ("oops") is under no named column`) {
		t.Errorf("malformed = %+v", f.Malformed)
	}
}

// A Slack-link row whose DM could not be sent (Slack refused it after the
// guest was invited) is finished on the same record by the next run: the
// redeem link is delivered, and the guest is not adopted anew without it.
func TestRunBulkRedeliversAfterNotifyFailure(t *testing.T) {
	e := newEnv(t)
	var slackDown atomic.Bool
	slackDown.Store(true)
	var delivered atomic.Int32 // redeem-link DMs Slack took
	e.note.NotifyFunc = func(_ context.Context, n flows.Notice) error {
		if n.Kind != flows.NoticeDone {
			return nil
		}
		if slackDown.Load() {
			return errors.New("slack: ratelimited")
		}
		if n.Invitation.RedeemURL != "" {
			delivered.Add(1)
		}
		return nil
	}
	csv := "email,send microsoft email\nann@northwind.com,false\n"
	first := byLine(e.bulkRun(t, csv, flows.BulkOptions{}))
	if r := first[2]; r.Outcome != flows.BulkFailed || r.Failure == nil || r.Failure.Code != flows.FailNotify {
		t.Fatalf("first run = %+v", r)
	}
	slackDown.Store(false)
	second := byLine(e.bulkRun(t, csv, flows.BulkOptions{}))
	if r := second[2]; r.Outcome != flows.BulkInvited || r.InvitationID != first[2].InvitationID {
		t.Errorf("second run = %+v, want invited on the same record %s", r, first[2].InvitationID)
	}
	if n := e.dir.Count("Invite"); n != 1 {
		t.Errorf("Invite calls = %d, want 1", n)
	}
	if n := delivered.Load(); n != 1 {
		t.Errorf("%d redeem-link DMs taken by Slack, want 1", n)
	}
}

// The same row from someone else is theirs: it is not reported as done by
// the first sender's run, and it finds the guest the first run invited.
func TestRunBulkOtherInviter(t *testing.T) {
	e := newEnv(t)
	csv := "email,send microsoft email\nbob@fabrikam.com,true\n"
	e.bulkRun(t, csv, flows.BulkOptions{})
	f := parse(t, csv)
	res, err := e.svc.RunBulk(t.Context(), flows.Inviter{TeamID: "T1", UserID: "UOTHER"}, f, flows.BulkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	if r := res[0]; r.Earlier || r.Outcome != flows.BulkExisting {
		t.Errorf("other inviter's run = %+v, want existing (adopted), not done earlier", r)
	}
	if n := e.dir.Count("Invite"); n != 1 {
		t.Errorf("Invite calls = %d, want 1", n)
	}
}

// A row an approver denied stays denied when the file runs again: asking
// the approvers again takes a changed row (e.g. a new justification).
func TestRunBulkDeniedRowNotAskedAgain(t *testing.T) {
	e := newEnv(t)
	p := e.svc.Policy()
	p.Domains = flows.DomainPolicy{Default: flows.DomainApprove}
	p.Approvers = []string{"UAPPROVER"}
	e.svc.SetPolicy(p)
	csv := "email,justification\nbob@fabrikam.com,Needs the portal\n"
	first := e.bulkRun(t, csv, flows.BulkOptions{})
	if first[0].Outcome != flows.BulkAwaitingApproval {
		t.Fatalf("first run = %+v", first[0])
	}
	if _, err := e.svc.Decide(t.Context(), first[0].InvitationID, flows.Inviter{TeamID: "T1", UserID: "UAPPROVER"}, false, "not now"); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	again := e.bulkRun(t, csv, flows.BulkOptions{})
	if r := again[0]; r.Outcome != flows.BulkFailed || r.Failure == nil || r.Failure.Code != flows.FailDenied || r.InvitationID != first[0].InvitationID {
		t.Errorf("re-run = %+v", r)
	}
	invs, _ := e.store.Invitations(t.Context(), flows.InvitationFilter{})
	if len(invs) != 1 {
		t.Errorf("%d invitation records, want 1 (no new approval request)", len(invs))
	}
	changed := e.bulkRun(t, "email,justification\nbob@fabrikam.com,Needs the portal for the audit\n", flows.BulkOptions{})
	if changed[0].Outcome != flows.BulkAwaitingApproval {
		t.Errorf("changed row = %+v, want a new approval request", changed[0])
	}
}

// A Slack-link row whose POST /invitations reached Graph but whose answer
// was lost carries on on the same record in the next run: its redeem link
// is delivered, rather than the guest being adopted without one.
func TestRunBulkAnswerLostKeepsTheLink(t *testing.T) {
	e := newEnv(t)
	var lost atomic.Bool
	lost.Store(true)
	e.dir.InviteFunc = func(ctx context.Context, inv flows.Invite) (flows.Invited, error) {
		got, err := e.dir.DefaultInvite(ctx, inv)
		if lost.Load() {
			return flows.Invited{}, &flows.DirectoryError{Op: "invite", Status: http.StatusBadRequest, Code: "BadRequest", Message: "lost"}
		}
		return got, err
	}
	csv := "email,send microsoft email\nann@northwind.com,false\n"
	first := e.bulkRun(t, csv, flows.BulkOptions{})
	if first[0].Outcome != flows.BulkFailed {
		t.Fatalf("first run = %+v", first[0])
	}
	lost.Store(false)
	second := e.bulkRun(t, csv, flows.BulkOptions{})
	if r := second[0]; r.Outcome != flows.BulkInvited || r.InvitationID != first[0].InvitationID {
		t.Errorf("second run = %+v, want invited (not existing) on the same record", r)
	}
	var links int
	for _, n := range e.note.Notices() {
		if n.Kind == flows.NoticeDone && n.Invitation.RedeemURL != "" {
			links++
		}
	}
	if links != 1 {
		t.Errorf("%d redeem-link DMs, want 1", links)
	}
}

// forbidGroupAdds makes group adds fail with 403 until the returned flag
// is cleared; then an add for a user not in the directory is 404.
func (e *env) forbidGroupAdds() *atomic.Bool {
	forbid := new(atomic.Bool)
	forbid.Store(true)
	e.dir.AddGroupMemberFunc = func(ctx context.Context, gid, uid string) error {
		if forbid.Load() {
			return &flows.DirectoryError{Op: "add group member", Status: http.StatusForbidden, Code: "Authorization_RequestDenied"}
		}
		if !slices.ContainsFunc(e.dir.Users(), func(u flows.DirectoryUser) bool { return u.ID == uid }) {
			return &flows.DirectoryError{Op: "add group member", Status: http.StatusNotFound, Code: "Request_ResourceNotFound"}
		}
		return e.dir.DefaultAddGroupMember(ctx, gid, uid)
	}
	return forbid
}

// A guest deleted after its row failed is invited afresh by the re-runs,
// not stuck on the deleted object: the first re-run finds it gone
// (not_found), the next invites again.
func TestRunBulkGuestDeletedMeanwhile(t *testing.T) {
	e := newEnv(t)
	forbid := e.forbidGroupAdds()
	csv := "email,send microsoft email,groups\nbob@fabrikam.com,true,Portal\n"
	first := e.bulkRun(t, csv, flows.BulkOptions{})
	if first[0].Failure == nil || first[0].Failure.Code != flows.FailForbidden {
		t.Fatalf("first run = %+v", first[0])
	}
	forbid.Store(false)
	if err := e.dir.DeleteUser(t.Context(), first[0].ObjectID); err != nil {
		t.Fatal(err)
	}
	second := e.bulkRun(t, csv, flows.BulkOptions{})
	if second[0].Failure == nil || second[0].Failure.Code != flows.FailNotFound {
		t.Fatalf("second run = %+v, want not_found", second[0])
	}
	third := e.bulkRun(t, csv, flows.BulkOptions{})
	if r := third[0]; r.Outcome != flows.BulkInvited || r.ObjectID == first[0].ObjectID || r.ObjectID == "" {
		t.Errorf("third run = %+v, want invited as a new user", r)
	}
	if m := e.dir.GroupMembers("g1"); !slices.Equal(m, []string{third[0].ObjectID}) {
		t.Errorf("g1 members = %v", m)
	}
}

// A row's failed record is not revived when a newer invitation for the
// address exists: the row is sent anew, and meets that invitation.
func TestRunBulkNoRevivalBehindANewerInvitation(t *testing.T) {
	e := newEnv(t)
	forbid := e.forbidGroupAdds()
	csv := "email,send microsoft email,groups\nbob@fabrikam.com,true,Portal\n"
	first := e.bulkRun(t, csv, flows.BulkOptions{})
	forbid.Store(false)
	// Meanwhile someone invites bob from the dialog; the existing account
	// waits for their pick.
	if _, err := e.svc.Submit(t.Context(), "V1", flows.Inviter{TeamID: "T1", UserID: "UOTHER"}, flows.Request{Email: "bob@fabrikam.com"}); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	second := e.bulkRun(t, csv, flows.BulkOptions{})
	if r := second[0]; r.Outcome != flows.BulkRejected || !strings.Contains(r.Reason, "already in progress") {
		t.Errorf("second run = %+v, want rejected: already in progress", r)
	}
	if inv, _ := e.store.Invitation(t.Context(), first[0].InvitationID); inv.State != flows.StateFailed {
		t.Errorf("the old record is %s, want still failed", inv.State)
	}
}

func TestParseBulkQuotesAndTemplateSeparators(t *testing.T) {
	// An extra quote on the last row is that row's problem only.
	f := parse(t, "email,display name\nbob@fabrikam.com,Bob\nann@fabrikam.com,\"Ann\"x\n")
	if len(f.Rows) != 1 || len(f.Malformed) != 1 || f.Malformed[0].Line != 3 {
		t.Errorf("rows %+v, malformed %+v", f.Rows, f.Malformed)
	}
	// Microsoft's template saved with ";": the separator is read from the
	// header, not the version line.
	f = parse(t, "version:v1.0;;\nEmail address to invite [inviteeEmail] Required;Redirection url [inviteRedirectURL] Required\nbob@fabrikam.com;https://myapps.microsoft.com\n")
	if len(f.Rows) != 1 || f.Rows[0].Request.RedirectURL != "https://myapps.microsoft.com" {
		t.Errorf("rows %+v, malformed %+v", f.Rows, f.Malformed)
	}
	// Excel's "sep=" line with a tab.
	f = parse(t, "sep=\t\nemail\tdisplay name\nbob@fabrikam.com\tBob\n")
	if len(f.Rows) != 1 || f.Rows[0].Request.DisplayName != "Bob" {
		t.Errorf("rows %+v, malformed %+v", f.Rows, f.Malformed)
	}
}

package main

// End-to-end tests of bulk invitations: a CSV file shared in a DM with the
// bot (file_shared, files.info, the download with the bot token, progress
// by chat.update, the results file by files upload v2), and `invitebot
// bulk` on the command line.

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/slackfake"
)

const bulkSample = "email,display name,redirect url,send microsoft email,message,groups\n" +
	"bob@fabrikam.com,Bob Smith,https://portal.fabrikam.example,true,Welcome aboard,Partner portal users\n" + // 2
	"ann@northwind.com,Ann Lee,,false,,\n" + // 3: Slack link
	"eve@contoso.com,Eve,,true,,\n" + // 4: one of our own domains
	"not-an-address,X,,,,\n" + // 5: malformed
	"old@litware.com,Old Guest,,true,,Partner portal users\n" // 6: already a guest

// shareFile shares content as user in their DM with the bot and returns the
// file's ID.
func (h *harness) shareFile(t *testing.T, user, name string, content []byte) string {
	t.Helper()
	id := h.slack.ShareFile(user, slackfake.DMChannel(user), name, content)
	r, err := h.player.FileShared(h.ctx, user, slackfake.DMChannel(user), id)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("file_shared: %v %d %s", err, r.Status, r.Body)
	}
	return id
}

// resultsFile waits for the n-th results file posted to user's DM and
// returns its rows.
func (h *harness) resultsFile(t *testing.T, user string, n int) (slackfake.File, [][]string) {
	t.Helper()
	var files []slackfake.File
	err := h.slack.WaitFor(h.ctx, func() bool {
		files = nil
		for _, f := range h.slack.Files() {
			if f.User == slackfake.BotUserID && f.Channel == slackfake.DMChannel(user) {
				files = append(files, f)
			}
		}
		return len(files) >= n
	})
	if err != nil {
		t.Fatalf("no results file %d: %v (log: %s)", n, err, h.logs.String())
	}
	rows, err := csv.NewReader(bytes.NewReader(files[n-1].Content)).ReadAll()
	if err != nil {
		t.Fatalf("results are not CSV: %v\n%s", err, files[n-1].Content)
	}
	return files[n-1], rows
}

// botMessages returns the bot's messages in user's DM, latest versions.
func (h *harness) botMessages(user string) []string {
	var out []string
	for _, m := range h.slack.Messages() {
		if m.Channel == slackfake.DMChannel(user) && !m.Ephemeral {
			out = append(out, m.Text)
		}
	}
	return out
}

func TestE2EBulkFromSlack(t *testing.T) { bothTransports(t, testBulkFromSlack) }

func testBulkFromSlack(t *testing.T, h *harness) {
	old := h.tenant.AddUser(graphfake.User{DisplayName: "Old Guest", Mail: "old@litware.com", UserType: "Guest",
		ExternalUserState: "Accepted", UserPrincipalName: "old_litware.com#EXT#@contoso.onmicrosoft.com", AccountEnabled: true})
	h.shareFile(t, ann, "guests.csv", []byte(bulkSample))
	f, rows := h.resultsFile(t, ann, 1)
	if f.Name != "guests.results.csv" || !strings.Contains(f.Comment, "2 invited, 1 existing, 1 rejected, 1 malformed") {
		t.Errorf("results file %q, comment %q", f.Name, f.Comment)
	}
	if !slices.Equal(rows[0], []string{"row", "email", "object_id", "outcome", "reason"}) || len(rows) != 6 {
		t.Fatalf("results:\n%s", f.Content)
	}
	byLine := map[string][]string{}
	for _, r := range rows[1:] {
		byLine[r[0]] = r
	}
	for line, want := range map[string]string{"2": "invited", "3": "invited", "4": "rejected", "5": "malformed", "6": "existing"} {
		if got := byLine[line]; got == nil || got[3] != want {
			t.Errorf("line %s = %q, want %s", line, got, want)
		}
	}
	if r := byLine["6"]; r[2] != old.ID {
		t.Errorf("existing guest's object ID = %q, want %q", r[2], old.ID)
	}
	if r := byLine["4"]; !strings.Contains(r[4], "contoso.com is one of your organisation's own domains") {
		t.Errorf("rejected reason = %q", r[4])
	}
	if r := byLine["5"]; !strings.Contains(r[4], "email:") {
		t.Errorf("malformed reason = %q", r[4])
	}
	// Graph got two invitations, with the rows' own settings, and the
	// groups were added, the existing guest's included.
	invs := h.tenant.Invitations()
	if len(invs) != 2 {
		t.Fatalf("Graph invitations = %+v", invs)
	}
	members := h.tenant.GroupMembers(emuPortal)
	if !slices.Contains(members, old.ID) || !slices.Contains(members, byLine["2"][2]) || len(members) != 2 {
		t.Errorf("portal members = %v", members)
	}
	// The progress message ended with the summary; the only other message
	// in the DM is the Slack-link row's redeem link. No link is in the
	// results or the progress message.
	msgs := h.botMessages(ann)
	if len(msgs) != 2 || !strings.Contains(msgs[0], "5 of 5 rows done") || !strings.Contains(msgs[0], "Done: 2 invited, 1 existing") {
		t.Errorf("DM messages:\n%s", strings.Join(msgs, "\n---\n"))
	}
	if !strings.Contains(msgs[1], "ann@northwind.com") {
		t.Errorf("second DM is not ann@northwind.com's invitation: %s", msgs[1])
	}
	for _, s := range append([]string{string(f.Content)}, msgs[0]) {
		if strings.Contains(s, "redeem?") || strings.Contains(s, "ticket") {
			t.Errorf("a redeem link leaked: %s", s)
		}
	}

	// Shared again (a new upload of the same content): nothing is sent
	// twice, and every done row says so.
	h.shareFile(t, ann, "guests.csv", []byte(bulkSample))
	_, again := h.resultsFile(t, ann, 2)
	for _, r := range again[1:] {
		if (r[3] == "invited" || r[3] == "existing") && !strings.HasPrefix(r[4], "done in an earlier run") {
			t.Errorf("re-run row %q", r)
		}
	}
	if n := len(h.tenant.Invitations()); n != 2 {
		t.Errorf("Graph invitations after the re-run = %d, want 2", n)
	}
}

// What the bot refuses, each said in the DM with nothing invited.
func TestE2EBulkRefusals(t *testing.T) {
	h := start(t)
	if err := poll(h.ctx, func() bool { return strings.Contains(h.logs.String(), `"msg":"slack identity"`) }); err != nil {
		t.Fatal(err)
	}
	expect := func(n int, want string) {
		t.Helper()
		if err := h.slack.WaitFor(h.ctx, func() bool { return len(h.botMessages(ann)) >= n }); err != nil {
			t.Fatalf("no answer %d: %v (log: %s)", n, err, h.logs.String())
		}
		if got := h.botMessages(ann)[n-1]; !strings.Contains(got, want) {
			t.Errorf("answer %d = %q, want it to contain %q", n, got, want)
		}
	}
	// Over the size limit: refused from files.info's size, never downloaded.
	big := "email\n" + strings.Repeat("someone@fabrikam.com\n", 60000)
	h.shareFile(t, ann, "big.csv", []byte(big))
	expect(1, "over the limit of 1048576 (INVITEBOT_BULK_MAX_BYTES). Nobody was invited.")
	if n := len(h.slack.Calls("files.download")); n != 0 {
		t.Errorf("%d downloads of an oversized file", n)
	}
	// Over the row limit.
	var b strings.Builder
	b.WriteString("email\n")
	for i := range 2001 {
		fmt.Fprintf(&b, "g%d@fabrikam.com\n", i)
	}
	h.shareFile(t, ann, "many.csv", []byte(b.String()))
	expect(2, "the file has more than 2000 rows. Nobody was invited.")
	// An unknown column.
	h.shareFile(t, ann, "typo.csv", []byte("email,gruops\nbob@fabrikam.com,x\n"))
	expect(3, `line 1: unknown column "gruops"; the columns are: email, display name`)
	// Not a CSV file.
	h.shareFile(t, ann, "notes.txt", []byte("hello"))
	expect(4, "notes.txt is not a CSV file. Send invitebot a CSV file")
	// The bot's own uploads, and files in channels, are not for it.
	id := h.slack.ShareFile(slackfake.BotUserID, slackfake.DMChannel(ann), "mine.csv", []byte("email\nx@fabrikam.com\n"))
	if _, err := h.player.FileShared(h.ctx, slackfake.BotUserID, slackfake.DMChannel(ann), id); err != nil {
		t.Fatal(err)
	}
	// Someone else's file, shared into Ann's DM: only its owner's are run.
	id = h.slack.ShareFile("U0OTHER", slackfake.DMChannel(ann), "theirs.csv", []byte("email\nx@fabrikam.com\n"))
	if _, err := h.player.FileShared(h.ctx, ann, slackfake.DMChannel(ann), id); err != nil {
		t.Fatal(err)
	}
	id = h.slack.ShareFile(ann, "C0GENERAL", "chan.csv", []byte("email\nx@fabrikam.com\n"))
	if _, err := h.player.FileShared(h.ctx, ann, "C0GENERAL", id); err != nil {
		t.Fatal(err)
	}
	// Someone the policy does not let invite.
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte("admins: ["+emuAdmin+"]\ninviters: ["+emuAdmin+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cfg.PolicyPath = path
	h.reloadPolicy(t)
	h.shareFile(t, ann, "guests.csv", []byte(bulkSample))
	expect(5, "You are not one of the people who may invite guests")
	if n := len(h.tenant.Invitations()); n != 0 {
		t.Errorf("Graph invitations = %d, want none", n)
	}
	if n := len(h.botMessages(ann)); n != 5 {
		t.Errorf("%d messages, want 5 (the bot's own file, someone else's and the channel's get no answer): %q", n, h.botMessages(ann))
	}
	if n := len(h.slack.Calls("files.info")); n != 5 {
		t.Errorf("files.info calls = %d, want 5 (4 refused files and someone else's; not for the bot's own file, the channel's or a refused inviter's)", n)
	}
}

// 200 rows against Graph's own invitation limit (150 per 5 s per tenant):
// invitebot paces POST /invitations so that Graph never answers 429.
func TestE2EBulkUnderGraphLimit(t *testing.T) {
	h := start(t)
	h.tenant.SetInvitationLimit(150, 5*time.Second)
	var b strings.Builder
	b.WriteString("email,send microsoft email\n")
	const rows = 200
	for i := range rows {
		fmt.Fprintf(&b, "guest%03d@fabrikam.com,true\n", i)
	}
	h.shareFile(t, ann, "many.csv", []byte(b.String()))
	f, got := h.resultsFile(t, ann, 1)
	if !strings.Contains(f.Comment, fmt.Sprintf("%d invited.", rows)) {
		t.Errorf("comment %q", f.Comment)
	}
	if len(got) != rows+1 {
		t.Errorf("%d result rows", len(got)-1)
	}
	throttled := 0
	for _, r := range h.tenant.Requests() {
		if r.Path == "/invitations" && r.Status == http.StatusTooManyRequests {
			throttled++
		}
	}
	if throttled != 0 || len(h.tenant.Invitations()) != rows {
		t.Errorf("429s = %d, invitations = %d", throttled, len(h.tenant.Invitations()))
	}
}

// The CLI: the same steps, a results file next to the input, and a re-run
// that skips what is done.
func TestBulkCLI(t *testing.T) {
	h := start(t)
	// One Graph client per process (kiota keeps a global): the CLI runs
	// when the bot is stopped, as it must (the store is the bot's).
	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	h.tenant.AddUser(graphfake.User{DisplayName: "Old Guest", Mail: "old@litware.com", UserType: "Guest", AccountEnabled: true})
	env := doctorEnv(t, h, emuPortal)
	env["INVITEBOT_DB"] = h.cfg.DBPath
	policy, _ := os.ReadFile(env["INVITEBOT_CONFIG"])
	policy = bytes.ReplaceAll(policy, []byte("GA"), []byte("Partner portal users"))
	if err := os.WriteFile(env["INVITEBOT_CONFIG"], policy, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "guests.csv")
	if err := os.WriteFile(in, []byte(bulkSample), 0o600); err != nil {
		t.Fatal(err)
	}
	bulk := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := runBulk(h.ctx, args, func(k string) string { return env[k] }, deps{authHTTP: h.sts.Client()}, &out, &errOut)
		return out.String(), errOut.String(), err
	}
	out, progress, err := bulk("-as", ann, in)
	if err != errRowsNeedAttention {
		t.Fatalf("err = %v, want errRowsNeedAttention\n%s\n%s", err, out, progress)
	}
	if !strings.Contains(out, "2 invited, 1 existing, 1 rejected, 1 malformed; results in "+filepath.Join(dir, "guests.results.csv")) ||
		!strings.Contains(out, "line 4: eve@contoso.com rejected: email: contoso.com") || !strings.Contains(out, "line 5: not-an-address malformed: email:") {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.HasPrefix(progress, "[..............................] 0/5 rows\n") || !strings.Contains(progress, "[##############################] 5/5 rows, 2 need attention\n") {
		t.Errorf("progress:\n%s", progress)
	}
	res, err := os.ReadFile(filepath.Join(dir, "guests.results.csv"))
	if err != nil || !strings.HasPrefix(string(res), "row,email,object_id,outcome,reason\n2,bob@fabrikam.com,") {
		t.Fatalf("results file: %v\n%s", err, res)
	}
	if n := len(h.tenant.Invitations()); n != 2 {
		t.Errorf("Graph invitations = %d", n)
	}
	// Again, with -o: nothing sent twice.
	out, _, err = bulk("-as", ann, "-o", filepath.Join(dir, "again.csv"), in)
	if err != errRowsNeedAttention || !strings.Contains(out, "2 invited, 1 existing, 1 rejected, 1 malformed") {
		t.Errorf("re-run: %v\n%s", err, out)
	}
	again, _ := os.ReadFile(filepath.Join(dir, "again.csv"))
	if !strings.Contains(string(again), "done in an earlier run") || len(h.tenant.Invitations()) != 2 {
		t.Errorf("re-run results (%d invitations):\n%s", len(h.tenant.Invitations()), again)
	}
	// Refusals name what is wrong, before anything is sent.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{in}, "-as is required"},
		{[]string{"-as", ann}, "exactly one CSV file"},
		{[]string{"-as", "nobody@contoso.com", in}, "-as nobody@contoso.com: no Slack user with that email"},
		{[]string{"-as", ann, filepath.Join(dir, "missing.csv")}, "no such file"},
		{[]string{"-as", ann, "-o", in, in}, "is the input file; choose another results file"},
		{[]string{"-as", ann, "-o", filepath.Join(dir, "nowhere", "r.csv"), in}, "cannot write the results next to"},
	} {
		if _, _, err := bulk(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bulk %q: %v, want %q", tc.args, err, tc.want)
		}
	}
	env["INVITEBOT_BULK_MAX_ROWS"] = "3"
	if _, _, err := bulk("-as", ann, in); err == nil || !strings.Contains(err.Error(), "more than 3 rows; nobody was invited") {
		t.Errorf("row limit: %v", err)
	}
	env["INVITEBOT_BULK_MAX_ROWS"] = ""
	env["INVITEBOT_BULK_MAX_BYTES"] = "100"
	if _, _, err := bulk("-as", ann, in); err == nil || !strings.Contains(err.Error(), "over INVITEBOT_BULK_MAX_BYTES (100); nobody was invited") {
		t.Errorf("size limit: %v", err)
	}
	if n := len(h.tenant.Invitations()); n != 2 {
		t.Errorf("Graph invitations after the refusals = %d, want still 2", n)
	}
}

// holdInvites holds POST /invitations for one address until the request is
// cancelled, while held is set.
type holdInvites struct {
	email string
	held  atomic.Bool
	fired chan struct{}
	once  sync.Once
}

func (h *holdInvites) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/invitations") && h.held.Load() && r.Body != nil {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		plain := body
		if r.Header.Get("Content-Encoding") == "gzip" { // kiota compresses request bodies
			if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
				plain, _ = io.ReadAll(zr)
			}
		}
		if bytes.Contains(plain, []byte(h.email)) {
			h.once.Do(func() { close(h.fired) })
			<-r.Context().Done()
			return nil, r.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// invitebot stops (SIGTERM) while a bulk run has a row in flight: the run
// reports what it finished and that the rest was interrupted, the row's
// invitation is checkpointed, and after the restart the same file finishes
// it without inviting anyone twice.
func TestE2EBulkStopAndResume(t *testing.T) {
	hold := &holdInvites{email: "ann@northwind.com", fired: make(chan struct{})}
	hold.held.Store(true)
	h := startWith(t, overHTTP, deps{pollInterval: -1, graphTransport: hold})
	const file = "email,send microsoft email\nbob@fabrikam.com,true\nann@northwind.com,true\n"
	h.shareFile(t, ann, "two.csv", []byte(file))
	select {
	case <-hold.fired:
	case <-h.ctx.Done():
		t.Fatal("ann's invitation never reached POST /invitations")
	}
	err := poll(h.ctx, func() bool { // bob's row is done
		invs, _ := h.app.db.Invitations(h.ctx, flows.InvitationFilter{Emails: []string{"bob@fabrikam.com"}, States: []flows.State{flows.StateNotified}})
		return len(invs) == 1
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	f, rows := h.resultsFile(t, ann, 1)
	if !strings.Contains(f.Comment, "1 invited, 1 interrupted") || rows[2][3] != "interrupted" {
		t.Errorf("results after the stop: %q\n%s", f.Comment, f.Content)
	}
	if msgs := h.botMessages(ann); len(msgs) != 1 || !strings.Contains(msgs[0], "share the same file again to finish") {
		t.Errorf("progress message: %q", msgs)
	}
	hold.held.Store(false)
	if err := h.startApp(); err != nil {
		t.Fatal(err)
	}
	h.shareFile(t, ann, "two.csv", []byte(file))
	f, rows = h.resultsFile(t, ann, 2)
	if !strings.Contains(f.Comment, "2 invited.") || !strings.HasPrefix(rows[1][4], "done in an earlier run") {
		t.Errorf("results after the restart: %q\n%s", f.Comment, f.Content)
	}
	n := 0
	for _, u := range h.tenant.Users() {
		if u.Mail == "ann@northwind.com" || u.Mail == "bob@fabrikam.com" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d guests, want 2", n)
	}
}

package flows

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Bulk invitations: a CSV file of invitees, each row going through the same
// policy, lookup, invite, group and provisioning steps as the dialog.
//
// A row's invitation is keyed by the row's content (see BulkRow.Key), not by
// the file or the line: a second run of the same file, or of a corrected
// copy, finds the invitations the first run made and skips the rows that
// are done, resumes the ones a crash interrupted, and tries again the ones
// that failed.

// The bulk file's columns, by their canonical names. BulkColumns lists them
// in the order of the sample file; only email is required.
const (
	ColEmail         = "email"
	ColDisplayName   = "display name"
	ColRedirectURL   = "redirect url"
	ColSendEmail     = "send microsoft email"
	ColMessage       = "message"
	ColGroups        = "groups"
	ColJustification = "justification"
)

// BulkColumns are the columns a bulk file may have.
var BulkColumns = []string{ColEmail, ColDisplayName, ColRedirectURL, ColSendEmail, ColMessage, ColGroups, ColJustification}

// columnAliases maps other spellings of a header (after normalizeHeader) to
// a canonical column: the bracketed keys of Microsoft's bulk-invite
// template, and a few obvious variants.
var columnAliases = map[string]string{
	"email address": ColEmail, "inviteeemail": ColEmail, "mail": ColEmail,
	"name": ColDisplayName, "displayname": ColDisplayName, "invitee display name": ColDisplayName,
	"redirect": ColRedirectURL, "redirecturl": ColRedirectURL, "inviteredirecturl": ColRedirectURL, "redirection url": ColRedirectURL,
	"send email": ColSendEmail, "sendemail": ColSendEmail, "send invitation message": ColSendEmail,
	"customizedmessagebody": ColMessage, "customized invitation message": ColMessage, "invitation message": ColMessage,
	"group": ColGroups,
}

// Default bulk limits.
const (
	DefaultBulkMaxBytes = 1 << 20
	DefaultBulkMaxRows  = 2000
)

// BulkLimits bound a bulk file; a file over either is refused before any
// invitation is sent.
type BulkLimits struct {
	MaxBytes int64 // zero: DefaultBulkMaxBytes
	MaxRows  int   // data rows; zero: DefaultBulkMaxRows
}

func (l BulkLimits) withDefaults() BulkLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultBulkMaxBytes
	}
	if l.MaxRows <= 0 {
		l.MaxRows = DefaultBulkMaxRows
	}
	return l
}

// ErrBulkRefused wraps every reason a bulk file is refused as a whole.
var ErrBulkRefused = errors.New("bulk file refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBulkRefused, fmt.Sprintf(format, args...))
}

// BulkRow is one well-formed row of a bulk file.
type BulkRow struct {
	Line    int // the row's line in the file (the header is line 1)
	Request Request
	// Key identifies the row's content (address and every field), so a
	// re-run recognises the row whatever its line.
	Key string
}

// BulkFile is a parsed bulk file.
type BulkFile struct {
	Name      string
	Rows      []BulkRow
	Malformed []BulkResult // rows skipped, with why
}

// Total is the number of data rows, well-formed or not.
func (f *BulkFile) Total() int { return len(f.Rows) + len(f.Malformed) }

// BulkOutcome is what became of a row.
type BulkOutcome string

// The outcomes.
const (
	// BulkInvited: invited and provisioned (now, or in an earlier run).
	BulkInvited BulkOutcome = "invited"
	// BulkExisting: the address already was a guest in the directory; it
	// was adopted (groups added, provisioned) without a new invitation.
	BulkExisting BulkOutcome = "existing"
	// BulkAwaitingApproval: the policy sent the row to an approver.
	BulkAwaitingApproval BulkOutcome = "awaiting_approval"
	// BulkRejected: the policy or validation refused the row (nothing sent).
	BulkRejected BulkOutcome = "rejected"
	// BulkFailed: a step failed; Failure says why.
	BulkFailed BulkOutcome = "failed"
	// BulkMalformed: the row could not be read; skipped.
	BulkMalformed BulkOutcome = "malformed"
	// BulkInterrupted: invitebot stopped before the row finished; a re-run
	// resumes it.
	BulkInterrupted BulkOutcome = "interrupted"
	// BulkAwaitingSignIn: inviting as the inviter, Microsoft stopped
	// accepting their sign-in during the run (it expired or was revoked):
	// the row waits in awaiting_sign_in and is sent as them once they
	// reconnect (for SignInTimeout at most). A run whose inviter is not
	// connected at its start is refused as a whole (see ReadyToInvite).
	BulkAwaitingSignIn BulkOutcome = "awaiting_sign_in"
)

// OK reports whether the row needs nothing more from the person who sent
// the file.
func (o BulkOutcome) OK() bool {
	return o == BulkInvited || o == BulkExisting || o == BulkAwaitingApproval
}

// BulkResult is one row's result.
type BulkResult struct {
	Line         int
	Email        string
	ObjectID     string
	InvitationID string
	Outcome      BulkOutcome
	Reason       string   // why, in words, unless Failure says it
	Failure      *Failure // BulkFailed's failure
	// Earlier reports that an earlier run had already finished the row.
	Earlier bool
}

// ParseBulk reads a bulk CSV file (RFC 4180; a UTF-8 byte order mark and
// Microsoft's "version:v1.0" first line are skipped). The first row names
// the columns (see BulkColumns; case, spaces, "-" and "_" do not matter,
// and Microsoft's template's bracketed keys are understood). A file over
// the limits, without an email column, or with an unknown column is
// refused as a whole (ErrBulkRefused); a row that cannot be read is
// reported in Malformed with its line and skipped. Groups are named by
// their policy name or their object ID, separated by semicolons, and must
// be groups the policy offers.
func ParseBulk(r io.Reader, name string, lim BulkLimits, p Policy) (*BulkFile, error) {
	lim = lim.withDefaults()
	data, err := io.ReadAll(io.LimitReader(r, lim.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(data)) > lim.MaxBytes {
		return nil, refuse("the file is larger than %s", byteSize(lim.MaxBytes))
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		line := 1 + bytes.Count(data[:invalidUTF8(data)], []byte("\n"))
		return nil, refuse("line %d is not UTF-8 text: save the file as \"CSV UTF-8\"", line)
	}
	comma := rune(0)
	first, _, _ := bytes.Cut(data, []byte("\n"))
	switch f := strings.ToLower(strings.TrimSuffix(string(first), "\r")); {
	case strings.HasPrefix(strings.TrimSpace(f), "version:"): // Microsoft's template
		data = data[len(first):] // an empty first line: line numbers stay the file's
	case strings.HasPrefix(f, "sep=") && utf8.RuneCountInString(f) == 5: // Excel's separator line
		comma, _ = utf8.DecodeRuneInString(f[4:])
		data = data[len(first):]
	}
	if comma == 0 {
		// Excel in a locale that separates with ";" writes the header
		// without commas.
		comma = ','
		if h := headerLine(data); !strings.Contains(h, ",") && strings.Contains(h, ";") {
			comma = ';'
		}
	}
	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comma = comma
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil, refuse("the file is empty: the first line must name the columns (%s)", strings.Join(BulkColumns, ", "))
	}
	if err != nil {
		return nil, refuse("the header: %v", csvErr(err))
	}
	hl, _ := cr.FieldPos(0)
	cols, err := bulkHeader(header, hl)
	if err != nil {
		return nil, err
	}
	f := &BulkFile{Name: name}
	seen := map[string]int{} // normalised address → line
	var lastErr *csv.ParseError
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			if lastErr != nil && errors.Is(lastErr.Err, csv.ErrQuote) && lastErr.Line > lastErr.StartLine {
				// The reader looked for the closing quote over the lines
				// after it, to the end of the file: those rows are lost.
				return nil, refuse("line %d: a quoted field runs from there to the end of the file (line %d): a quote is missing or extra", lastErr.StartLine, lastErr.Line)
			}
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			lastErr = pe
			f.Malformed = append(f.Malformed, BulkResult{Line: pe.StartLine, Outcome: BulkMalformed, Reason: csvErr(err)})
			continue
		}
		lastErr = nil
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		if isBlank(rec) {
			continue
		}
		if f.Total() >= lim.MaxRows {
			return nil, refuse("the file has more than %d rows", lim.MaxRows)
		}
		row, msg := bulkRow(rec, cols, p)
		row.Line = line
		if msg == "" {
			key := NormalizeEmail(row.Request.Email)
			if at, dup := seen[key]; dup {
				msg = fmt.Sprintf("the same address as line %d", at)
			} else {
				seen[key] = line
			}
		}
		if msg != "" {
			f.Malformed = append(f.Malformed, BulkResult{Line: line, Email: strings.TrimSpace(field(rec, cols, ColEmail)), Outcome: BulkMalformed, Reason: msg})
			continue
		}
		f.Rows = append(f.Rows, row)
	}
	if f.Total() == 0 {
		return nil, refuse("the file has no rows under its header")
	}
	return f, nil
}

// headerLine returns the first line of data that is not blank.
func headerLine(data []byte) string {
	for line := range bytes.Lines(data) {
		if s := strings.TrimSpace(string(line)); s != "" {
			return s
		}
	}
	return ""
}

func csvErr(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return "not valid CSV: " + pe.Err.Error()
	}
	return err.Error()
}

// invalidUTF8 returns the offset of the first byte of data that is not
// valid UTF-8.
func invalidUTF8(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(data)
}

func isBlank(rec []string) bool {
	return !slices.ContainsFunc(rec, func(s string) bool { return strings.TrimSpace(s) != "" })
}

// normalizeHeader folds a header cell: lower case, "_" and "-" as spaces,
// spaces collapsed, and a bracketed key ("Email address to invite
// [inviteeEmail] Required") taken alone.
func normalizeHeader(h string) string {
	if i := strings.IndexByte(h, '['); i >= 0 {
		if j := strings.IndexByte(h[i:], ']'); j > 0 {
			h = h[i+1 : i+j]
		}
	}
	h = strings.NewReplacer("_", " ", "-", " ").Replace(strings.ToLower(h))
	return strings.Join(strings.Fields(h), " ")
}

// bulkHeader maps the header row to column positions.
func bulkHeader(header []string, line int) (map[string]int, error) {
	cols := map[string]int{}
	for i, h := range header {
		n := normalizeHeader(h)
		if a, ok := columnAliases[n]; ok {
			n = a
		}
		switch {
		case n == "":
			continue // a column without a name (a spreadsheet's empty column): it must stay empty
		case !slices.Contains(BulkColumns, n):
			return nil, refuse("line %d: unknown column %q; the columns are: %s", line, strings.TrimSpace(h), strings.Join(BulkColumns, ", "))
		}
		if _, dup := cols[n]; dup {
			return nil, refuse("line %d: column %q appears twice", line, n)
		}
		cols[n] = i
	}
	if _, ok := cols[ColEmail]; !ok {
		return nil, refuse("line %d: there is no %q column (the first line must name the columns: %s)", line, ColEmail, strings.Join(BulkColumns, ", "))
	}
	return cols, nil
}

func field(rec []string, cols map[string]int, col string) string {
	i, ok := cols[col]
	if !ok || i >= len(rec) {
		return ""
	}
	return rec[i]
}

// bulkRow turns a record into a row, or says what is wrong with it. What
// Validate checks (lengths, the redirect URL, the domain policy) is left to
// the submission, which reports it the same way the dialog does.
func bulkRow(rec []string, cols map[string]int, p Policy) (BulkRow, string) {
	named := map[int]bool{}
	for _, i := range cols {
		named[i] = true
	}
	for i, v := range rec {
		if !named[i] && strings.TrimSpace(v) != "" {
			return BulkRow{}, fmt.Sprintf("field %d (%q) is under no named column", i+1, v)
		}
	}
	get := func(c string) string { return strings.TrimSpace(field(rec, cols, c)) }
	r := Request{
		Email: get(ColEmail), DisplayName: get(ColDisplayName), RedirectURL: get(ColRedirectURL),
		Message: get(ColMessage), Justification: get(ColJustification),
	}
	if r.Email == "" {
		return BulkRow{}, "the email is empty"
	}
	if msg := CheckEmail(r.Email); msg != "" {
		return BulkRow{}, "email: " + msg
	}
	switch send := strings.ToLower(get(ColSendEmail)); send {
	case "":
		// the policy's (or the domain's) default delivery
	case "true", "yes", "1":
		r.Delivery = DeliveryMicrosoftEmail
	case "false", "no", "0":
		r.Delivery = DeliverySlackLink
	default:
		return BulkRow{}, fmt.Sprintf("%s must be true or false, not %q", ColSendEmail, send)
	}
	groups, msg := p.ResolveGroups(get(ColGroups))
	if msg != "" {
		return BulkRow{}, msg
	}
	r.Groups = groups
	return BulkRow{Request: r, Key: rowKey(r)}, ""
}

// rowKey hashes a row's content: the normalised address and every field.
func rowKey(r Request) string {
	h := sha256.New()
	for _, s := range append([]string{NormalizeEmail(r.Email), r.DisplayName, r.RedirectURL, string(r.Delivery), r.Message, r.Justification}, r.Groups...) {
		fmt.Fprintf(h, "%d:%s\x00", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// DefaultBulkConcurrency is how many rows are in flight at once.
const DefaultBulkConcurrency = 16

// BulkOptions configure RunBulk.
type BulkOptions struct {
	// Concurrency is how many rows are in flight at once; zero:
	// DefaultBulkConcurrency. POST /invitations is paced by the service's
	// invitation window whatever this is.
	Concurrency int
	// Progress, if set, is called once per row as it finishes (malformed
	// rows first), one call at a time.
	Progress func(BulkResult)
}

// RunBulk invites f's rows as who: each goes through Submit's policy and
// validation and the same steps as an invitation from the dialog, except
// that an existing account is adopted only when it is the one guest with
// that address (anything else needs a person's pick: the row fails and
// says so), and the outcome is reported in the results rather than by a DM
// per row (a row delivered by Slack link still DMs who its redeem link).
// Rows an earlier run finished are reported, not sent again. It returns
// one result per row, in line order; a cancelled ctx ends the run early
// with the unfinished rows interrupted (their invitations resume on the
// next start or run). Inviting as the inviter (INVITEBOT_INVITE_AS=
// inviter), a who who is not connected, or whose sign-in Microsoft no
// longer accepts, is refused as a whole before anything is recorded: the
// error is then ErrSignInNeeded (a *SignInError says why).
func (s *Service) RunBulk(ctx context.Context, who Inviter, f *BulkFile, opt BulkOptions) ([]BulkResult, error) {
	if !s.Policy().MayInvite(who.UserID) {
		return nil, ErrNotAuthorized
	}
	if err := s.ReadyToInvite(ctx, who); err != nil {
		// Inviting as the inviter, who is not connected: refused as a
		// whole, before anything is recorded (rather than every row
		// waiting for a sign-in the run cannot show).
		return nil, fmt.Errorf("bulk: %w", err)
	}
	if s.Domains() == nil {
		// Validate then refuses internal addresses up front, as the dialog
		// does; if Graph cannot say yet, each row's check step does.
		if err := s.RefreshDomains(ctx); err != nil {
			s.log.WarnContext(ctx, "bulk: verified domains not loaded", "err", err)
		}
	}
	h, err := s.bulkHistory(ctx, f)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	results := make([]BulkResult, 0, f.Total())
	report := func(r BulkResult) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, r)
		if opt.Progress != nil {
			opt.Progress(r)
		}
	}
	for _, m := range f.Malformed {
		report(m)
	}
	n := opt.Concurrency
	if n <= 0 {
		n = DefaultBulkConcurrency
	}
	rows := make(chan BulkRow)
	var wg sync.WaitGroup
	for range min(n, len(f.Rows)) {
		wg.Go(func() {
			for row := range rows {
				if ctx.Err() != nil || s.ctx.Err() != nil { // the run, or the service, is stopping
					report(BulkResult{Line: row.Line, Email: row.Request.Email, Outcome: BulkInterrupted, Reason: "stopped before this row; run the file again"})
					continue
				}
				report(s.bulkRow(ctx, who, f.Name, row, h))
			}
		})
	}
	for _, row := range f.Rows {
		rows <- row
	}
	close(rows)
	wg.Wait()
	slices.SortFunc(results, func(a, b BulkResult) int { return a.Line - b.Line })
	return results, nil
}

// bulkKey is a row's key for who: the same row sent by someone else is
// theirs to send (it then finds the guest the first sender invited).
func bulkKey(who Inviter, row BulkRow) string { return row.Key + ":" + who.UserID }

// retryAfterInvite takes up prev, a bulk row's invitation that failed at
// or after POST /invitations, on the same record: from the step that
// failed, or from the invitation again when the guest went missing
// (deleted meanwhile, or never visible: a re-POST invites afresh or
// returns the user). A row that failed before (a lookup, a policy
// refusal) is not revived: it is sent anew. Nor is a record that was not
// its address's latest when the run read the store: a newer invitation
// decides. It reports
// whether it revived prev; ErrWrongState means prev is not failed any
// more (another run took it up).
func (s *Service) retryAfterInvite(ctx context.Context, prev *Invitation, h bulkHistory) (bool, error) {
	f := prev.Failure
	if f == nil || prev.Picked || h.latest[NormalizeEmail(prev.Request.Email)] != prev.ID {
		return false, nil
	}
	to := f.Step
	switch {
	case f.Step == StateInviting:
	case prev.ObjectID != "" && (f.Step == StateInvited || f.Step == StateAttributesSet || f.Step == StateGroupsAdded || f.Step == StateProvisioned):
		if f.Code == FailNotFound {
			to = StateInviting
		}
	default:
		return false, nil
	}
	_, err := s.store.UpdateInvitation(ctx, prev.ID, func(cur *Invitation) error {
		if cur.State != StateFailed {
			return ErrWrongState
		}
		cur.Failure = nil
		if to == StateInviting {
			cur.GroupsAdded = nil // a new user, if the old one is gone
		}
		s.setState(cur, to, ActorBot, "retried by a bulk re-run", "after "+string(f.Code))
		return nil
	})
	return err == nil, err
}

// bulkHistory is what a bulk run reads of the store once, at its start.
type bulkHistory struct {
	prior  map[string]*Invitation // bulk row key → its latest invitation
	latest map[string]string      // normalised address → its latest invitation's ID
}

// bulkHistory reads the invitations for f's addresses: a row's earlier
// invitations have its address (the row key covers it).
func (s *Service) bulkHistory(ctx context.Context, f *BulkFile) (bulkHistory, error) {
	emails := make([]string, len(f.Rows))
	for i, row := range f.Rows {
		emails[i] = NormalizeEmail(row.Request.Email)
	}
	h := bulkHistory{prior: map[string]*Invitation{}, latest: map[string]string{}}
	if len(emails) == 0 {
		return h, nil
	}
	invs, err := s.store.Invitations(ctx, InvitationFilter{Emails: emails})
	if err != nil {
		return bulkHistory{}, fmt.Errorf("bulk: read earlier runs: %w", err)
	}
	for _, inv := range invs { // oldest first: the latest wins
		h.latest[NormalizeEmail(inv.Request.Email)] = inv.ID
		if inv.Origin.Kind == OriginBulk {
			key, _ := bulkOriginKey(inv.Origin.Key)
			h.prior[key] = inv
		}
	}
	return h, nil
}

// bulkOriginKey splits a bulk row's origin key, "<row key>:<inviter>:
// <attempt>": the origin key makes a submission idempotent, so a row is
// submitted once per attempt however often the file is run.
func bulkOriginKey(key string) (row string, attempt int) {
	i := strings.LastIndexByte(key, ':')
	if i < 0 {
		return key, 0
	}
	n, _ := strconv.Atoi(key[i+1:])
	return key[:i], n
}

// bulkRow runs one row: it reports what an earlier run did, resumes it, or
// submits the row anew (a first attempt, or after a failure, revocation
// or deletion), and waits for the invitation's run to end.
func (s *Service) bulkRow(ctx context.Context, who Inviter, file string, row BulkRow, h bulkHistory) BulkResult {
	res := BulkResult{Line: row.Line, Email: row.Request.Email}
	var inv *Invitation
	prev := h.prior[bulkKey(who, row)]
	denied := prev != nil && prev.State == StateFailed && prev.Failure != nil && prev.Failure.Code == FailDenied
	revived := false
	if prev != nil && prev.State == StateFailed && !denied {
		var err error
		revived, err = s.retryAfterInvite(ctx, prev, h)
		if errors.Is(err, ErrWrongState) {
			if cur, err := s.store.Invitation(ctx, prev.ID); err == nil {
				prev = cur // another run of the file took it up first: follow that
			}
		}
	}
	switch {
	case denied:
		inv, res.Earlier = prev, true // asking the approvers again takes a changed row
	case prev != nil && prev.State != StateFailed && prev.State != StateRevoked && prev.State != StateRemoved:
		res.Earlier = prev.State.Terminal() || prev.State.Waiting()
		if !res.Earlier {
			s.start(ctx, prev.ID) // a crash interrupted it
		}
		inv = prev
	case revived:
		// The invitation reached Graph (and a Slack-link row has, or will
		// get, its redeem link): carry on from the failed step rather than
		// adopt the guest anew, which would lose the link.
		s.start(ctx, prev.ID)
		inv = prev
	default:
		attempt := 1
		if prev != nil {
			_, n := bulkOriginKey(prev.Origin.Key)
			attempt = n + 1
		}
		o := Origin{Kind: OriginBulk, Key: fmt.Sprintf("%s:%d", bulkKey(who, row), attempt), Name: fmt.Sprintf("%s line %d", file, row.Line)}
		var err error
		inv, err = s.submit(ctx, o, who, row.Request)
		var fe FieldErrors
		switch {
		case errors.As(err, &fe):
			res.Outcome, res.Reason = BulkRejected, bulkFieldErrors(fe)
			return res
		case err != nil:
			res.Outcome, res.Reason = BulkInterrupted, "could not record the invitation: "+err.Error()
			if ctx.Err() == nil {
				res.Outcome = BulkFailed
				res.Failure = &Failure{Code: FailInternal, Message: err.Error()}
			}
			return res
		}
	}
	got, err := s.await(ctx, inv.ID)
	if err != nil { // cancelled: report the record as it stands
		got, err = s.store.Invitation(context.WithoutCancel(ctx), inv.ID)
	}
	if err == nil {
		inv = got
	}
	res.InvitationID, res.ObjectID = inv.ID, inv.ObjectID
	switch inv.State {
	case StateNotified, StateAccepted:
		res.Outcome, res.Reason = BulkInvited, bulkDelivery(inv)
		if inv.Picked {
			res.Outcome, res.Reason = BulkExisting, "already a guest in the directory; adopted without a new invitation"
		}
		if inv.State == StateAccepted {
			res.Reason = "accepted"
		}
	case StateAwaitingApproval:
		res.Outcome, res.Reason = BulkAwaitingApproval, "waiting for an approver"
	case StateAwaitingSignIn:
		res.Outcome, res.Reason = BulkAwaitingSignIn, "waits for the inviter to reconnect their Microsoft account (/invite-guest connect): it is sent as them once they do, within "+age(SignInTimeout)
	case StateFailed, StateRevoked, StateRemoved:
		res.Outcome, res.Failure = BulkFailed, inv.Failure
		if inv.Failure == nil {
			res.Reason = string(inv.State)
		}
	default:
		res.Outcome, res.Reason = BulkInterrupted, "invitebot stopped at "+string(inv.State)+"; run the file again to finish"
	}
	if res.Earlier && res.Outcome.OK() {
		res.Reason = "done in an earlier run: " + res.Reason
	}
	return res
}

func bulkDelivery(inv *Invitation) string {
	if inv.Request.Delivery == DeliveryMicrosoftEmail {
		return "Microsoft emailed the invitation"
	}
	return "the redeem link was sent to the inviter in Slack"
}

// bulkFieldErrors renders a submission's field errors for a results file.
func bulkFieldErrors(fe FieldErrors) string {
	return fieldErrorsText(fe, func(f Field) string {
		if f == FieldDelivery {
			return ColSendEmail
		}
		return strings.ReplaceAll(string(f), "_", " ")
	})
}

// fieldErrorsText renders field errors in one line, "field: message; …",
// in field order, naming each field as name does.
func fieldErrorsText(fe FieldErrors, name func(Field) string) string {
	keys := slices.Sorted(maps.Keys(fe))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = name(k) + ": " + fe[k]
	}
	return strings.Join(parts, "; ")
}

// ResolveGroups turns a list of the policy's groups, by name (any case) or
// object ID, separated by ";" (a bulk file's groups cell, a workflow
// step's groups input), into their object IDs, or says which one the
// policy does not offer.
func (p Policy) ResolveGroups(list string) ([]string, string) {
	var ids []string
	for g := range strings.SplitSeq(list, ";") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		i := slices.IndexFunc(p.Groups, func(pg Group) bool { return pg.ID == g || strings.EqualFold(pg.Name, g) })
		if i < 0 {
			return nil, fmt.Sprintf("group %q is not one the policy offers", g)
		}
		if !slices.Contains(ids, p.Groups[i].ID) {
			ids = append(ids, p.Groups[i].ID)
		}
	}
	return ids, ""
}

// await waits until invitation id's run has ended (it finished, waits for
// a person, failed, or the service stopped) and returns it. A run on
// another replica (a row another run of the file started there) is
// watched in the store.
func (s *Service) await(ctx context.Context, id string) (*Invitation, error) {
	for {
		s.mu.Lock()
		if !s.running[id] {
			s.mu.Unlock()
			inv, err := s.store.Invitation(ctx, id)
			if err != nil || inv.Runner == "" || inv.Runner == s.replica || inv.State.Terminal() || inv.State.Waiting() {
				return inv, err
			}
			if err := SleepContext(ctx, time.Second); err != nil {
				return nil, err
			}
			continue
		}
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		idle := s.idle
		s.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// BulkResultHeader is the header row of a bulk results file.
var BulkResultHeader = []string{"row", "email", "object_id", "outcome", "reason"}

// WriteBulkResults writes results to w as CSV: BulkResultHeader, then a
// row per result, whose "row" is the line in the file that was sent. A
// failure's reason is describe(failure). Cells are defused against formula
// injection like the audit log's; no redeem link is ever written.
func WriteBulkResults(w io.Writer, results []BulkResult, describe func(*Failure) string) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(BulkResultHeader)
	for _, r := range results {
		reason := r.Reason
		if r.Outcome == BulkFailed && r.Failure != nil {
			reason = describe(r.Failure)
		}
		row := []string{strconv.Itoa(r.Line), r.Email, r.ObjectID, string(r.Outcome), reason}
		for i := range row {
			row[i] = csvSafe(row[i])
		}
		_ = cw.Write(row)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// BulkSummary counts results by outcome.
type BulkSummary map[BulkOutcome]int

// Summarize counts results by outcome.
func Summarize(results []BulkResult) BulkSummary {
	s := BulkSummary{}
	for _, r := range results {
		s[r.Outcome]++
	}
	return s
}

// String renders the non-zero counts in a fixed order: "3 invited, 1
// failed".
func (s BulkSummary) String() string {
	var parts []string
	for _, o := range []BulkOutcome{BulkInvited, BulkExisting, BulkAwaitingApproval, BulkRejected, BulkFailed, BulkMalformed, BulkInterrupted, BulkAwaitingSignIn} {
		if s[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", s[o], strings.ReplaceAll(string(o), "_", " ")))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

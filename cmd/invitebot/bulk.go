package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/invitebot/invitebot/bot"
	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/store"
)

const bulkUsage = `Usage:
  invitebot bulk -as INVITER [-o RESULTS.csv] [-concurrency N] FILE.csv

Invites every row of FILE.csv through the same policy, directory lookup,
invitation, group and provisioning steps as the /invite-guest dialog, as
INVITER (a Slack user ID like U0123ABCD, or their Slack email address): the
policy's rules for that person apply, approvals go to the approvers, and
rows delivered by Slack link DM INVITER the redeem link. With
INVITEBOT_INVITE_AS=inviter the invitations are sent with INVITER's own
Microsoft sign-in, as from Slack: if they have not connected their account
(/invite-guest connect), the file is refused before anything is sent; with
inviter_or_app it is then sent as the app.

The first line names the columns: email (required), display name,
redirect url, send microsoft email (true/false), message, groups (names or
object IDs from the policy file, separated by ";"), justification. A
malformed row is reported with its line and skipped; a file over
INVITEBOT_BULK_MAX_BYTES or INVITEBOT_BULK_MAX_ROWS is refused before any
invitation. Running the same file again skips the rows already done,
finishes rows a stop interrupted, and retries rows that failed.

The results (row, email, object_id, outcome, reason) are written to
RESULTS.csv (default: FILE.results.csv). The exit status is 0 when every
row was invited, adopted or sent for approval, 1 otherwise.

It uses the same environment as invitebot serve and opens its store:
stop a running invitebot first, or send the file to the bot in a Slack DM.

Flags:
`

// errRowsNeedAttention is bulkCmd's error when some rows were not done.
var errRowsNeedAttention = errors.New("some rows were not invited; see the results file")

// bulkCmd is `invitebot bulk`.
func bulkCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runBulk(ctx, args, getenv, deps{}, stdout, stderr)
}

func runBulk(ctx context.Context, args []string, getenv func(string) string, d deps, stdout, stderr io.Writer) error {
	fset := flag.NewFlagSet("bulk", flag.ContinueOnError)
	fset.SetOutput(stderr)
	as := fset.String("as", "", "invite as this Slack `user`: their user ID (U…) or their Slack email address")
	out := fset.String("o", "", "write the results to `FILE` (default: the input's name with .results.csv)")
	conc := fset.Int("concurrency", 0, "rows in flight at once (default INVITEBOT_BULK_CONCURRENCY, 16)")
	fset.Usage = func() {
		fmt.Fprint(stderr, bulkUsage)
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		return err
	}
	if fset.NArg() != 1 {
		fset.Usage()
		return errors.New("bulk: give exactly one CSV file")
	}
	if *as == "" {
		return errors.New("bulk: -as is required: the Slack user (U… ID or email) the invitations are sent as")
	}
	if *conc < 0 || *conc > 150 {
		return fmt.Errorf("bulk: -concurrency must be from 1 to 150, got %d", *conc)
	}
	cfg, err := config.LoadOutbound(getenv) // it receives nothing from Slack
	if err != nil {
		return err
	}
	path := fset.Arg(0)
	resultsPath := cmp.Or(*out, strings.TrimSuffix(strings.TrimSuffix(path, ".csv"), ".CSV")+".results.csv")
	if sameFile(path, resultsPath) {
		return fmt.Errorf("bulk: -o %s is the input file; choose another results file", resultsPath)
	}
	// The results file is opened (as a temporary file beside it, renamed
	// at the end) before anything is sent: a run whose results cannot be
	// written would leave no record of its rows.
	tmp, err := os.CreateTemp(filepath.Dir(resultsPath), ".invitebot-*.tmp")
	if err != nil {
		return fmt.Errorf("bulk: cannot write the results next to %s: %w", resultsPath, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	defer tmp.Close()

	// The file is checked before anything is opened or sent.
	lim := flows.BulkLimits{MaxBytes: cfg.BulkMaxBytes, MaxRows: cfg.BulkMaxRows}
	if st, err := os.Stat(path); err != nil {
		return fmt.Errorf("bulk: %w", err)
	} else if st.Size() > cfg.BulkMaxBytes {
		return fmt.Errorf("bulk: %s is %d bytes, over INVITEBOT_BULK_MAX_BYTES (%d); nobody was invited", path, st.Size(), cfg.BulkMaxBytes)
	}
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("bulk: %w", err)
	}
	f, err := flows.ParseBulk(fh, filepath.Base(path), lim, cfg.FlowsPolicy())
	fh.Close()
	if err != nil {
		return fmt.Errorf("bulk: %s: %w; nobody was invited", path, err)
	}

	level := slog.LevelWarn // the progress bar is the news; LOG_LEVEL=debug shows the steps
	if cfg.LogLevel == slog.LevelDebug {
		level = slog.LevelDebug
	}
	tty := isTerminal(stderr)
	format := cfg.LogFormat
	if format == "" && tty {
		format = "text"
	}
	stderr = &lockedWriter{w: stderr} // the log and the progress bar share it
	log := newLogger(&config.Config{LogLevel: level, LogFormat: format}, stderr)
	d.pollInterval = -1 // no tracking here: invitebot serve tracks acceptance
	a, err := newApp(cfg, log, d)
	if errors.Is(err, store.ErrLocked) {
		return errors.New("bulk: the store is in use by a running invitebot; stop it, or send the file to the bot in a Slack DM")
	}
	if err != nil {
		return err
	}
	defer a.Close()
	who, err := a.inviter(ctx, *as)
	if err != nil {
		return err
	}
	// The verified domains (each row's check reads them again before
	// inviting if they could not be read), and, on a store replicas share,
	// this process's liveness among them: its rows run here, not on the
	// leader.
	a.svc.StartReplica(ctx)
	bar := newProgressBar(stderr, tty, f.Total())
	results, err := a.svc.RunBulk(ctx, who, f, flows.BulkOptions{
		Concurrency: cmp.Or(*conc, cfg.BulkConcurrency),
		Progress:    bar.add,
	})
	bar.finish()
	if errors.Is(err, flows.ErrNotAuthorized) {
		return fmt.Errorf("bulk: %s may not invite guests under the policy; nobody was invited", *as)
	}
	if errors.Is(err, flows.ErrSignInNeeded) {
		return notConnected(*as, err)
	}
	if err != nil {
		return fmt.Errorf("bulk: %w", err)
	}
	if err := writeResults(tmp, resultsPath, results); err != nil {
		return fmt.Errorf("bulk: results: %w", err)
	}
	sum := flows.Summarize(results)
	fmt.Fprintf(stdout, "%s: %s; results in %s\n", path, sum, resultsPath)
	for _, r := range results {
		if !r.Outcome.OK() {
			reason := r.Reason
			if r.Failure != nil {
				reason = bot.FailureReason(r.Failure)
			}
			fmt.Fprintf(stdout, "  line %d: %s %s: %s\n", r.Line, cmp.Or(r.Email, "-"), r.Outcome, reason)
		}
	}
	if ctx.Err() != nil {
		return errors.New("bulk: stopped; run the same file again to finish (rows already done are skipped)")
	}
	for _, r := range results {
		if !r.Outcome.OK() {
			return errRowsNeedAttention
		}
	}
	return nil
}

// notConnected is the refusal of a file whose -as person must (re)connect
// their Microsoft account first (INVITEBOT_INVITE_AS=inviter): they do
// that themselves, in Slack.
func notConnected(as string, err error) error {
	var se *flows.SignInError
	switch {
	case errors.As(err, &se) && se.Reason == flows.SignInConsent:
		return fmt.Errorf("bulk: INVITEBOT_INVITE_AS=%s: the app registration lacks admin consent for the delegated permission User.Invite.All (%s); an admin must grant it; nobody was invited", flows.InviteAsInviter, se.Code)
	case errors.As(err, &se) && se.Reason == flows.SignInExpired:
		return fmt.Errorf("bulk: INVITEBOT_INVITE_AS=%s sends invitations as %s, but Microsoft no longer accepts their sign-in (%s): they reconnect with /invite-guest connect in Slack, then run this again; nobody was invited", flows.InviteAsInviter, as, cmp.Or(se.Code, "expired or revoked"))
	}
	return fmt.Errorf("bulk: INVITEBOT_INVITE_AS=%s sends invitations as %s, who has not connected their Microsoft account: they connect with /invite-guest connect (or the Home tab) in Slack, then run this again; nobody was invited", flows.InviteAsInviter, as)
}

// inviter resolves -as: a Slack user ID, or an email looked up in Slack.
// The workspace comes from auth.test.
func (a *app) inviter(ctx context.Context, as string) (flows.Inviter, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.bot.Identify(cctx); err != nil {
		return flows.Inviter{}, fmt.Errorf("bulk: Slack: %w", err)
	}
	who := flows.Inviter{TeamID: a.bot.TeamID(), UserID: as}
	if strings.Contains(as, "@") {
		u, err := a.slack.GetUserByEmailContext(cctx, as)
		if err != nil {
			return flows.Inviter{}, fmt.Errorf("bulk: -as %s: no Slack user with that email (%v)", as, err)
		}
		who.UserID = u.ID
	}
	return who, nil
}

// writeResults writes the results to tmp (mode 0600), then renames it to
// path, so a crash never leaves half a results file.
func writeResults(tmp *os.File, path string, results []flows.BulkResult) error {
	if err := tmp.Chmod(0o600); err != nil {
		return err
	}
	if err := flows.WriteBulkResults(tmp, results, bot.FailureReason); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// progressBar shows a bulk run's progress: redrawn in place on a terminal,
// a line per tenth of the rows otherwise (logs, CI).
type progressBar struct {
	w                io.Writer
	tty              bool
	mu               sync.Mutex
	done, bad, total int
	shown            int // the last tenth printed (not a terminal)
}

func newProgressBar(w io.Writer, tty bool, total int) *progressBar {
	p := &progressBar{w: w, tty: tty, total: total}
	p.draw()
	return p
}

func (p *progressBar) add(r flows.BulkResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if !r.Outcome.OK() {
		p.bad++
	}
	p.draw()
}

// draw renders the bar; p.mu is held (or p is not shared yet).
func (p *progressBar) draw() {
	if !p.tty {
		tenth := 0
		if p.total > 0 {
			tenth = p.done * 10 / p.total
		}
		if p.done > 0 && tenth == p.shown && p.done != p.total {
			return
		}
		p.shown = tenth
		fmt.Fprintln(p.w, p.line())
		return
	}
	fmt.Fprint(p.w, "\r"+p.line()+"\x1b[K")
}

func (p *progressBar) line() string {
	const width = 30
	filled := 0
	if p.total > 0 {
		filled = p.done * width / p.total
	}
	s := fmt.Sprintf("[%s%s] %d/%d rows", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.done, p.total)
	if p.bad > 0 {
		verb := "need"
		if p.bad == 1 {
			verb = "needs"
		}
		s += fmt.Sprintf(", %d %s attention", p.bad, verb)
	}
	return s
}

func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// sameFile reports whether a and b name the same file (b may not exist).
func sameFile(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}

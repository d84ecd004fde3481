package bot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"

	"github.com/invitebot/invitebot/flows"
)

// Bulk invitations from a CSV file shared in a DM with the bot: the
// file_shared event names the file; files.info says who shared it, its
// name and size; it is downloaded with the bot token (files:read), parsed,
// and run through flows.Service.RunBulk, with a message in the DM that is
// updated as rows finish and a results file posted back at the end.

// bulkUpdateEvery bounds how often the progress message is edited
// (chat.update is rate limited per workspace).
const bulkUpdateEvery = 2 * time.Second

// bulkSlackTimeout bounds each Slack call of a bulk run.
const bulkSlackTimeout = 30 * time.Second

// BulkUsage tells people how to send a bulk file.
const BulkUsage = "Send invitebot a CSV file in this DM to invite many guests at once. The first line names the columns: " +
	"`email` (required), `display name`, `redirect url`, `send microsoft email` (true/false), `message`, " +
	"`groups` (names from the dialog, separated by `;`) and `justification` (for invitations that need approval)."

// fileShared handles a file_shared event: a CSV shared in a DM with the
// bot by someone who may invite starts a bulk run in the background.
func (b *Bot) fileShared(ctx context.Context, user, channel, fileID string) {
	id := b.id.Load()
	if fileID == "" || !strings.HasPrefix(channel, "D") || (id != nil && user == id.User) {
		return // files in channels, and the bot's own results files, are not for it
	}
	b.bulkMu.Lock()
	if b.bulkFiles == nil {
		b.bulkFiles = map[string]bool{}
	}
	if b.bulkFiles[fileID] || b.jobsCtx.Err() != nil {
		b.bulkMu.Unlock()
		return // Slack redelivered the event while the run goes on
	}
	b.bulkFiles[fileID] = true
	b.jobs.Add(1)
	b.bulkMu.Unlock()
	go func() {
		defer b.jobs.Done()
		defer func() {
			b.bulkMu.Lock()
			delete(b.bulkFiles, fileID)
			b.bulkMu.Unlock()
		}()
		// The run outlives the request, but its log lines keep its ID.
		ctx := WithRequestID(b.jobsCtx, RequestID(ctx))
		// Slack may redeliver the event to another replica: one runs it.
		held, release, err := b.svc.Hold(ctx, "bulk-file/"+fileID)
		switch {
		case errors.Is(err, flows.ErrLeaseHeld):
			b.log.InfoContext(ctx, "bulk: the file runs on another replica", "file", fileID, "err", err)
			return
		case err != nil:
			b.log.WarnContext(ctx, "bulk: could not tell whether another replica runs the file; running it here", "file", fileID, "err", err)
			held = ctx
		default:
			defer release()
		}
		b.runBulkFile(held, user, channel, fileID)
	}()
}

// runBulkFile reads, checks and runs one shared file. Everything that goes
// wrong is said in the DM.
func (b *Bot) runBulkFile(ctx context.Context, user, channel, fileID string) {
	say := func(text string) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bulkSlackTimeout)
		defer cancel()
		if _, _, err := b.api.PostMessageContext(cctx, channel, slack.MsgOptionText(text, false)); err != nil {
			b.log.WarnContext(ctx, "bulk: reply in DM", "user", user, "err", err)
		}
	}
	if b.id.Load() == nil {
		// Who the bot is decides which files are its own (results files).
		cctx, cancel := context.WithTimeout(ctx, bulkSlackTimeout)
		err := b.Identify(cctx)
		cancel()
		if err != nil {
			b.log.WarnContext(ctx, "bulk: file ignored until the bot's identity is known", "file", fileID, "err", err)
			say("invitebot cannot reach Slack properly right now; please share the file again in a few minutes.")
			return
		}
		if user == b.id.Load().User {
			return
		}
	}
	p := b.svc.Policy()
	if !p.MayInvite(user) {
		say("You are not one of the people who may invite guests, so invitebot will not run this file.")
		return
	}
	cctx, cancel := context.WithTimeout(ctx, bulkSlackTimeout)
	file, _, _, err := b.api.GetFileInfoContext(cctx, fileID, 0, 0)
	cancel()
	if err != nil {
		b.log.WarnContext(ctx, "bulk: files.info", "file", fileID, "err", err)
		text := "invitebot could not read the file you shared; please share it again."
		var se slack.SlackErrorResponse
		if errors.As(err, &se) && se.Err == "missing_scope" {
			text = "invitebot could not read the file: its Slack app lacks the `files:read` scope. Ask an admin to reinstall it from the current manifest."
		}
		say(text)
		return
	}
	if id := b.id.Load(); id != nil && file.User == id.User {
		return
	}
	if file.User != user || !slices.Contains(file.IMs, channel) {
		// file_shared goes to everyone who can see the file: run only a
		// file its owner shared in their own DM with the bot.
		b.log.InfoContext(ctx, "bulk: file not shared by its owner in a DM with the bot; ignored", "file", fileID, "user", user)
		return
	}
	name := file.Name
	if !strings.EqualFold(file.Filetype, "csv") && !strings.HasSuffix(strings.ToLower(name), ".csv") {
		say(fmt.Sprintf("%s is not a CSV file. %s", Escape(name), BulkUsage))
		return
	}
	lim := b.bulkLimits
	if int64(file.Size) > lim.MaxBytes {
		say(fmt.Sprintf(":x: %s was not run: it is %d bytes, over the limit of %d (INVITEBOT_BULK_MAX_BYTES). Nobody was invited.",
			Escape(name), file.Size, lim.MaxBytes))
		return
	}
	who := flows.Inviter{TeamID: b.TeamID(), UserID: user}
	// Inviting as the inviter, a person who is not connected is asked to
	// connect before the file is even downloaded: the whole file waits for
	// that, rather than every row.
	if err := b.svc.ReadyToInvite(ctx, who); err != nil {
		b.log.InfoContext(ctx, "bulk: file refused until the inviter connects", "user", user, "file", fileID, "err", err)
		b.bulkSignIn(ctx, user, channel, name, err)
		return
	}
	var buf bytes.Buffer
	cctx, cancel = context.WithTimeout(ctx, bulkSlackTimeout)
	err = b.api.GetFileContext(cctx, file.URLPrivateDownload, &limitedWriter{w: &buf, n: lim.MaxBytes + 1})
	cancel()
	if err != nil && !errors.Is(err, errTooLarge) {
		b.log.WarnContext(ctx, "bulk: download", "file", fileID, "err", err)
		say("invitebot could not download the file you shared; please share it again.")
		return
	}
	f, err := flows.ParseBulk(&buf, name, lim, p)
	if err != nil {
		if !errors.Is(err, flows.ErrBulkRefused) {
			b.log.ErrorContext(ctx, "bulk: parse", "file", fileID, "err", err)
		}
		say(fmt.Sprintf(":x: %s was not run: %s. Nobody was invited.", Escape(name), Escape(strings.TrimPrefix(err.Error(), flows.ErrBulkRefused.Error()+": "))))
		return
	}
	b.log.InfoContext(ctx, "bulk run", "user", user, "file", fileID, "rows", f.Total())
	b.bulkRun(ctx, who, channel, f)
}

// bulkSignIn refuses a bulk file because its sender must (re)connect their
// Microsoft account (why is from flows.Service.ReadyToInvite): one
// message, with a connect button, saying that nobody was invited.
func (b *Bot) bulkSignIn(ctx context.Context, user, channel, name string, why error) {
	text := ":key: *Connect your Microsoft account* to run " + Escape(name) + ".\n" +
		"invitebot sends invitations as you, with your own Microsoft Entra rights. Nobody was invited: share the file again once you have connected."
	var se *flows.SignInError
	switch {
	case !errors.Is(why, flows.ErrSignInNeeded):
		b.log.WarnContext(ctx, "bulk: sign-in check", "user", user, "err", why)
		text = ":x: " + Escape(name) + " was not run: invitebot could not check your Microsoft sign-in (the admins can see why in its log). Nobody was invited; share the file again in a few minutes."
	case errors.As(why, &se) && se.Reason == flows.SignInConsent:
		text = ":x: " + Escape(name) + " was not run: invitebot's app registration lacks admin consent for the delegated permission User.Invite.All; ask an admin to grant it. Nobody was invited."
	case errors.As(why, &se) && se.Reason != flows.SignInNotConnected:
		text = ":key: *Reconnect your Microsoft account* to run " + Escape(name) + ".\n" +
			"Microsoft no longer accepts your earlier sign-in (it expired or was revoked). Nobody was invited: share the file again once you have reconnected."
	}
	opts := []slack.MsgOption{slack.MsgOptionText(text, false)}
	if errors.Is(why, flows.ErrSignInNeeded) && (se == nil || se.Reason != flows.SignInConsent) {
		if blocks := b.connectBlocks(ctx, user, text); blocks != nil {
			opts = append(opts, slack.MsgOptionBlocks(blocks...))
		}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bulkSlackTimeout)
	defer cancel()
	if _, _, err := b.api.PostMessageContext(cctx, channel, opts...); err != nil {
		b.log.WarnContext(ctx, "bulk: reply in DM", "user", user, "err", err)
	}
}

// connectBlocks is text with a button carrying a fresh connect link for
// user, or nil if no link can be had (the text then stands alone).
func (b *Bot) connectBlocks(ctx context.Context, user, text string) []slack.Block {
	if b.signIn == nil {
		return nil
	}
	link, err := b.signIn.NewLink(ctx, user)
	if err != nil {
		b.log.WarnContext(ctx, "connect link", "user", user, "err", err)
		return nil
	}
	return ConnectBlocks(text, link)
}

// bulkRun runs f, keeping a progress message up to date, and posts the
// results file.
func (b *Bot) bulkRun(ctx context.Context, who flows.Inviter, channel string, f *flows.BulkFile) {
	var done, bad atomic.Int64
	total := f.Total()
	text := func(final string) string {
		return BulkProgressText(f.Name, int(done.Load()), total, int(bad.Load()), final)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bulkSlackTimeout)
	_, ts, err := b.api.PostMessageContext(cctx, channel, slack.MsgOptionText(text(""), false))
	cancel()
	if err != nil {
		b.log.WarnContext(ctx, "bulk: post progress", "err", err)
	}
	update := func(s string, blocks ...slack.Block) {
		if ts == "" {
			return
		}
		opts := []slack.MsgOption{slack.MsgOptionText(s, false)}
		if blocks != nil {
			opts = append(opts, slack.MsgOptionBlocks(blocks...))
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bulkSlackTimeout)
		defer cancel()
		if _, _, _, err := b.api.UpdateMessageContext(cctx, channel, ts, opts...); err != nil {
			b.log.DebugContext(ctx, "bulk: update progress", "err", err)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(bulkUpdateEvery)
		defer t.Stop()
		shown := int64(0)
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if n := done.Load(); n != shown {
					shown = n
					update(text(""))
				}
			}
		}
	})
	results, err := b.svc.RunBulk(ctx, who, f, flows.BulkOptions{
		Concurrency: b.bulkConcurrency,
		Progress: func(r flows.BulkResult) {
			done.Add(1)
			if !r.Outcome.OK() {
				bad.Add(1)
			}
		},
	})
	close(stop)
	wg.Wait()
	if err != nil {
		msg := "invitebot could not run the file; the admins can see why in its log."
		switch {
		case errors.Is(err, flows.ErrNotAuthorized):
			msg = "You are not one of the people who may invite guests, so invitebot did not run this file."
		case errors.Is(err, flows.ErrSignInNeeded): // disconnected since the file was shared
			msg = "Your Microsoft account is no longer connected, so invitebot did not run this file: nobody was invited. Connect it (`/invite-guest connect`), then share the file again."
		default:
			b.log.ErrorContext(ctx, "bulk run", "err", err)
		}
		update(text(msg))
		return
	}
	sum := flows.Summarize(results)
	// Rows do not refresh the Home tab one by one: once, now.
	b.refreshHomes(context.WithoutCancel(ctx), who.UserID)
	final := "Done: " + sum.String() + "."
	if sum[flows.BulkInterrupted] > 0 {
		final += " invitebot stopped before every row was done: share the same file again to finish (rows already done are skipped)."
	} else if sum[flows.BulkFailed]+sum[flows.BulkRejected]+sum[flows.BulkMalformed] > 0 {
		final += " Fix the rows the results file lists and share the file again: rows already done are skipped."
	}
	var blocks []slack.Block
	if n := sum[flows.BulkAwaitingSignIn]; n > 0 {
		// Microsoft stopped accepting the sender's sign-in during the run:
		// one button for all the waiting rows (they DM nothing themselves).
		final += fmt.Sprintf(" %d %s for you to reconnect your Microsoft account: %s sent as you once you do (within %s); share the file again afterwards for the final results.",
			n, plural(n, "row waits", "rows wait"), plural(n, "it is", "they are"), flows.Age(flows.SignInTimeout))
		blocks = b.connectBlocks(ctx, who.UserID, text(final))
	}
	update(text(final), blocks...)
	var out bytes.Buffer
	if err := flows.WriteBulkResults(&out, results, FailureReason); err != nil {
		b.log.ErrorContext(ctx, "bulk: results", "err", err)
		return
	}
	cctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), bulkSlackTimeout)
	defer cancel()
	_, err = b.api.UploadFileContext(cctx, slack.UploadFileParameters{
		Reader: &out, FileSize: out.Len(), Filename: resultsName(f.Name), Channel: channel,
		Title: "invitebot results for " + f.Name, InitialComment: "Results for " + Escape(f.Name) + ": " + sum.String() + ".",
	})
	if err != nil {
		b.log.WarnContext(ctx, "bulk: upload results", "err", err)
	}
}

// BulkProgressText renders a bulk run's progress message.
func BulkProgressText(name string, done, total, bad int, final string) string {
	const width = 20
	filled := 0
	if total > 0 {
		filled = done * width / total
	}
	s := fmt.Sprintf("Inviting from %s: %d of %d rows done", Escape(name), done, total)
	if bad > 0 {
		s += fmt.Sprintf(" (%d %s attention)", bad, plural(bad, "needs", "need"))
	}
	s += "\n`" + strings.Repeat("█", filled) + strings.Repeat("░", width-filled) + "`"
	if final != "" {
		s += "\n" + final
	}
	return s
}

// resultsName is the results file's name for a bulk file's.
func resultsName(name string) string {
	base := strings.TrimSuffix(name, ".csv")
	base = strings.TrimSuffix(base, ".CSV")
	return base + ".results.csv"
}

// TeamID is the workspace the bot is installed in, once Identify has
// read it; "" before.
func (b *Bot) TeamID() string {
	if id := b.id.Load(); id != nil {
		return id.Team
	}
	return ""
}

var errTooLarge = errors.New("file too large")

// limitedWriter writes at most n bytes, then fails.
type limitedWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		n, _ := l.w.Write(p[:l.n])
		l.n -= int64(n)
		return n, errTooLarge
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	return n, err
}

// Close stops bulk runs (their unfinished rows are reported interrupted and
// resume when the file is shared again) and waits for them to report.
func (b *Bot) Close() {
	b.jobsStop()
	b.stopProgress()
	b.stopHomes()
	b.jobs.Wait()
}

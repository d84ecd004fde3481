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
		b.runBulkFile(WithRequestID(b.jobsCtx, RequestID(ctx)), user, channel, fileID)
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
	b.bulkRun(ctx, flows.Inviter{TeamID: b.TeamID(), UserID: user}, channel, f)
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
	update := func(s string) {
		if ts == "" {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bulkSlackTimeout)
		defer cancel()
		if _, _, _, err := b.api.UpdateMessageContext(cctx, channel, ts, slack.MsgOptionText(s, false)); err != nil {
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
		if errors.Is(err, flows.ErrNotAuthorized) {
			msg = "You are not one of the people who may invite guests, so invitebot did not run this file."
		} else {
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
	update(text(final))
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

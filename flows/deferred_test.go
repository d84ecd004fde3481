package flows_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

// refusedUntil makes attribute and sponsor writes fail with Graph's 403
// while *closed is false, as under a role scoped to a dynamic unit the
// new guest has not joined yet.
func refusedUntil(e *env, open *atomic.Bool) {
	deny := func(op string) error {
		if open.Load() {
			return nil
		}
		return &flows.DirectoryError{Op: op, Status: 403, Code: "Authorization_RequestDenied", Message: "Insufficient privileges to complete the operation."}
	}
	e.dir.UpdateUserFunc = func(context.Context, string, flows.Attributes) error { return deny(flows.OpUpdateUser) }
	e.dir.AddSponsorFunc = func(context.Context, string, string) error { return deny(flows.OpAddSponsor) }
}

func sponsorEnv(t *testing.T) *env {
	t.Helper()
	e := &env{store: flowstest.NewStore(), dir: flowstest.NewDirectory(), note: &flowstest.Notifier{},
		people: flowstest.People{inviter.UserID: "ann@contoso.com"}}
	e.svc = e.start(t)
	e.dir.AddUser(flows.DirectoryUser{ID: "u-ann", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com", UserType: flows.UserTypeMember})
	return e
}

// cycle advances the clock by d and runs one tracking cycle to its end.
func (e *env) cycle(t *testing.T, d time.Duration) *flows.Invitation {
	t.Helper()
	e.advance(d)
	if _, err := e.svc.Track(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	invs, err := e.store.Invitations(t.Context(), flows.InvitationFilter{})
	if err != nil || len(invs) != 1 {
		t.Fatalf("invitations: %v %v", invs, err)
	}
	return invs[0]
}

func actions(inv *flows.Invitation) string {
	var a []string
	for _, ev := range inv.History {
		a = append(a, ev.Action)
	}
	return strings.Join(a, ", ")
}

// Ensure writes refused with 403 right after the invitation do not fail
// it: the invitation completes, the writes are retried by the tracking
// cycle with growing intervals (also after a restart), and the record and
// audit log say when they went through.
func TestRefusedWritesAreRetriedInTheBackground(t *testing.T) {
	e := sponsorEnv(t)
	var open atomic.Bool
	refusedUntil(e, &open)
	inv := e.submit(t, "V1", request())
	d := inv.Deferred
	if inv.State != flows.StateNotified || !d.Active() || !d.Attributes || d.SponsorID != "u-ann" || inv.Sponsor.InEntra {
		t.Fatalf("invitation = %s, deferred %+v, sponsor %+v", inv.State, d, inv.Sponsor)
	}
	if len(inv.GroupsAdded) != 2 || !strings.Contains(actions(inv), "attributes pending") {
		t.Errorf("groups %v, history %s", inv.GroupsAdded, actions(inv))
	}
	if !d.Until.Equal(d.Since.Add(flows.DefaultScopedWriteWindow)) {
		t.Errorf("window = %s, want %s", d.Until.Sub(d.Since), flows.DefaultScopedWriteWindow)
	}
	// The DM went out with the writes pending.
	if n := e.note.Notices(); n[len(n)-1].Kind != flows.NoticeDone || !n[len(n)-1].Invitation.Deferred.Active() {
		t.Errorf("last notice = %+v", n[len(n)-1])
	}
	updates := e.dir.Count("UpdateUser")
	if inv = e.cycle(t, 30*time.Second); e.dir.Count("UpdateUser") != updates {
		t.Errorf("retried before the first interval")
	}
	var gaps []time.Duration
	last := inv.Deferred.NextAt
	for i := range 3 { // 1 min, then 2, then 4: refused each time
		inv = e.cycle(t, last.Sub(e.now())+time.Second)
		if inv.Deferred.Attempts != i+1 || !inv.Deferred.Active() || !strings.Contains(inv.Deferred.LastError, "403") {
			t.Fatalf("after retry %d: %+v", i+1, inv.Deferred)
		}
		gaps = append(gaps, inv.Deferred.NextAt.Sub(last).Round(time.Minute))
		last = inv.Deferred.NextAt
	}
	if gaps[1] <= gaps[0] || gaps[2] <= gaps[1] {
		t.Errorf("intervals %v do not grow", gaps)
	}
	// A restart while pending: the new service's cycle picks it up.
	e.svc.Close()
	e.svc = e.start(t)
	open.Store(true)
	inv = e.cycle(t, last.Sub(e.now())+time.Second)
	if inv.Deferred.Active() || inv.Deferred.DoneAt.IsZero() || !inv.Sponsor.InEntra || inv.Sponsor.Note != "" {
		t.Fatalf("after the unit took the guest: deferred %+v, sponsor %+v", inv.Deferred, inv.Sponsor)
	}
	if got := e.dir.Sponsors(inv.ObjectID); len(got) != 1 || got[0] != "u-ann" {
		t.Errorf("Entra sponsors = %v", got)
	}
	log, _ := e.store.AuditLog(t.Context(), time.Time{})
	var written []string
	for _, ev := range log {
		if ev.Action == "attributes written" || ev.Action == "sponsor set in Entra" {
			written = append(written, ev.Action+": "+ev.Detail)
		}
	}
	if len(written) != 2 || !strings.Contains(written[0], "after 4 retries") {
		t.Errorf("audit log = %v", written)
	}
	if g, _ := e.store.Guest(t.Context(), inv.ObjectID); g == nil || g.Sponsor == nil || !g.Sponsor.InEntra {
		t.Errorf("guest's sponsor = %+v", g)
	}
	calls := e.dir.Count("UpdateUser")
	e.cycle(t, 24*time.Hour)
	if e.dir.Count("UpdateUser") != calls {
		t.Error("written again after it was done")
	}
}

// Ensure a 403 that outlasts the window ends the retries, and the inviter
// is told once, naming what Entra requires; the record says why.
func TestRefusedWritesGiveUpAfterTheWindow(t *testing.T) {
	e := sponsorEnv(t)
	var open atomic.Bool
	refusedUntil(e, &open)
	inv := e.submit(t, "V1", request())
	for i := 0; inv.Deferred.Active(); i++ {
		if i > 60 {
			t.Fatalf("still retrying after %d cycles: %+v", i, inv.Deferred)
		}
		inv = e.cycle(t, time.Hour)
	}
	d := inv.Deferred
	if !strings.Contains(d.GaveUp, "403") || !strings.Contains(d.GaveUp, "User.ReadWrite.All") || !strings.Contains(d.GaveUp, "users/basic/update") {
		t.Errorf("gave up: %q", d.GaveUp)
	}
	if d.Attempts < 20 || d.Attempts > 40 {
		t.Errorf("%d retries over 24 h", d.Attempts)
	}
	if !strings.Contains(inv.Sponsor.Note, "did not take the sponsor") {
		t.Errorf("sponsor note = %q", inv.Sponsor.Note)
	}
	if n := e.note.Count(flows.NoticeWritesAbandoned, inv.ID); n != 1 {
		t.Fatalf("%d abandon notices, want 1", n)
	}
	for _, n := range e.note.Notices() {
		if n.Kind == flows.NoticeWritesAbandoned && (n.Failure == nil || n.Failure.Op != flows.OpUpdateUser || n.Failure.Code != flows.FailForbidden) {
			t.Errorf("notice failure = %+v", n.Failure)
		}
	}
	if len(inv.Outbox) != 0 || !strings.Contains(actions(inv), "pending writes abandoned") {
		t.Errorf("outbox %v, history %s", inv.Outbox, actions(inv))
	}
}

// Ensure a negative window keeps the old behaviour: the 403 is final.
func TestRefusedWritesWithoutWindowFail(t *testing.T) {
	e := &env{store: flowstest.NewStore(), dir: flowstest.NewDirectory(), note: &flowstest.Notifier{}, window: -1}
	e.svc = e.start(t)
	var open atomic.Bool
	refusedUntil(e, &open)
	inv := e.submit(t, "V1", request())
	if inv.State != flows.StateFailed || inv.Failure.Code != flows.FailForbidden || inv.Deferred != nil {
		t.Fatalf("invitation = %s %+v %+v", inv.State, inv.Failure, inv.Deferred)
	}
}

// Ensure pending writes end, without a retry, when the guest was deleted
// in Entra meanwhile.
func TestRefusedWritesEndWhenTheGuestIsRemoved(t *testing.T) {
	e := sponsorEnv(t)
	var open atomic.Bool
	refusedUntil(e, &open)
	e.dir.UpdateUserFunc = nil // only the sponsor is refused
	inv := e.submit(t, "V1", request())
	if !inv.Deferred.Active() || inv.Deferred.Attributes || inv.Deferred.SponsorID == "" {
		t.Fatalf("deferred = %+v", inv.Deferred)
	}
	if _, err := e.store.UpdateInvitation(t.Context(), inv.ID, func(cur *flows.Invitation) error {
		cur.State = flows.StateRemoved
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sponsors := e.dir.Count("AddSponsor")
	inv = e.cycle(t, time.Hour)
	if inv.Deferred.Active() || !strings.Contains(inv.Deferred.GaveUp, "deleted") || e.dir.Count("AddSponsor") != sponsors {
		t.Errorf("deferred = %+v, %d sponsor calls", inv.Deferred, e.dir.Count("AddSponsor")-sponsors)
	}
}

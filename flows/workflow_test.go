package flows_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/invitebot/invitebot/flows"
)

func step(id, email string) flows.Step {
	return flows.Step{ExecutionID: id, WorkflowExecutionID: "Wx" + id, Token: "xwfp-" + id, Requester: inviter, Email: email}
}

// completions lets the background work end and returns the invitation's
// step completions.
func (e *env) completions(t *testing.T, id string) []flows.Notice {
	t.Helper()
	e.svc.Wait()
	var out []flows.Notice
	for _, n := range e.note.Notices() {
		if n.Kind == flows.NoticeStepCompleted && n.Invitation.ID == id {
			out = append(out, n)
		}
	}
	return out
}

func TestRunStep(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	st := step("Fx1", "bob@fabrikam.com")
	st.Groups = "portal; g2 ;"
	inv, err := e.svc.RunStep(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Origin != (flows.Origin{Kind: flows.OriginWorkflow, Key: "Fx1", Name: "WxFx1", Token: "xwfp-Fx1"}) || len(inv.Request.Groups) != 2 {
		t.Errorf("invitation: %+v %v", inv.Origin, inv.Request.Groups)
	}
	// Redelivered: the same invitation, nothing new.
	again, err := e.svc.RunStep(ctx, st)
	if err != nil || again.ID != inv.ID {
		t.Fatalf("redelivery: %v %v", again, err)
	}
	cs := e.completions(t, inv.ID)
	got, _ := e.store.Invitation(ctx, inv.ID)
	if len(cs) != 1 || cs[0].Invitation.State != flows.StateNotified || cs[0].Invitation.ObjectID == "" || got.State != flows.StateNotified {
		t.Fatalf("completions %+v, record %s", cs, got.State)
	}
	if e.dir.Count("Invite") != 1 || e.note.Count(flows.NoticeDone, inv.ID) != 1 {
		t.Errorf("%d invitations, %d outcome DMs", e.dir.Count("Invite"), e.note.Count(flows.NoticeDone, inv.ID))
	}
	if d := got.History[0].Detail; !strings.Contains(d, "workflow=WxFx1 step=Fx1") || strings.Contains(d, "xwfp") {
		t.Errorf("requested event detail %q", d)
	}
	// A redelivery of the finished step completes nothing again.
	if _, err := e.svc.RunStep(ctx, st); err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	if n := e.note.Count(flows.NoticeStepCompleted, inv.ID); n != 1 {
		t.Errorf("%d completions after a redelivery of a finished step", n)
	}
}

func TestRunStepRefused(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	for _, c := range []struct {
		st   flows.Step
		want string
	}{
		{step("Fx1", "eve@contoso.com"), "own domains"},
		{func() flows.Step { s := step("Fx2", "bob@fabrikam.com"); s.Groups = "Portal;Finance"; return s }(), `group "Finance"`},
		{func() flows.Step { s := step("Fx3", "bob@fabrikam.com"); s.Delivery = "pigeon"; return s }(), "delivery"},
		{func() flows.Step { s := step("Fx4", "bob@fabrikam.com"); s.Requester = flows.Inviter{}; return s }(), "no requester"},
		{step("Fx5", ""), "email input is empty"},
	} {
		inv, err := e.svc.RunStep(ctx, c.st)
		if err != nil {
			t.Fatal(err)
		}
		cs := e.completions(t, inv.ID)
		if len(cs) != 1 || cs[0].Invitation.State != flows.StateFailed || cs[0].Invitation.Failure.Code != flows.FailRefused ||
			!strings.Contains(cs[0].Invitation.Failure.Message, c.want) {
			t.Errorf("%s: %+v", c.st.ExecutionID, cs)
		}
		if again, err := e.svc.RunStep(ctx, c.st); err != nil || again.ID != inv.ID {
			t.Errorf("%s: redelivery %v %v", c.st.ExecutionID, again, err)
		}
	}
	e.svc.Wait()
	if n := e.note.Count(flows.NoticeStepCompleted, ""); n != 5 || e.dir.Count("Invite") != 0 {
		t.Errorf("%d completions, %d invitations", n, e.dir.Count("Invite"))
	}
	// The requester is told (not when there is none).
	if n := e.note.Count(flows.NoticeFailed, ""); n != 4 {
		t.Errorf("%d failure DMs, want 4", n)
	}
}

// A completion Slack did not take stays in the outbox for the next flush.
func TestRunStepCompletionRetried(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	var fail atomic.Bool
	fail.Store(true)
	e.note.NotifyFunc = func(_ context.Context, n flows.Notice) error {
		if n.Kind == flows.NoticeStepCompleted && fail.Load() {
			return errors.New("slack down")
		}
		return nil
	}
	inv, err := e.svc.RunStep(ctx, step("Fx1", "bob@fabrikam.com"))
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Wait()
	got, _ := e.store.Invitation(ctx, inv.ID)
	if got.State != flows.StateNotified || len(got.Outbox) != 1 || got.Outbox[0].Kind != flows.NoticeStepCompleted {
		t.Fatalf("record %s outbox %+v", got.State, got.Outbox)
	}
	fail.Store(false)
	before := len(e.completions(t, inv.ID))
	if _, err := e.svc.Track(ctx); err != nil {
		t.Fatal(err)
	}
	n := len(e.completions(t, inv.ID))
	got, _ = e.store.Invitation(ctx, inv.ID)
	if n != before+1 || len(got.Outbox) != 0 {
		t.Errorf("after the next cycle: %d more completions, outbox %+v", n-before, got.Outbox)
	}
}

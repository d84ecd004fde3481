package flows_test

import (
	"context"
	"sync"
	"testing"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

// countingPeople is a flows.People that counts its lookups and, while
// hold is set, blocks them until their context ends.
type countingPeople struct {
	mu    sync.Mutex
	email map[string]string
	calls int
	hold  bool
	held  chan struct{} // closed when a lookup is held
}

func (p *countingPeople) Email(ctx context.Context, id string) (string, error) {
	p.mu.Lock()
	p.calls++
	hold, email := p.hold, p.email[id]
	p.mu.Unlock()
	if hold {
		p.mu.Lock()
		if p.held != nil {
			close(p.held)
			p.held = nil
		}
		p.mu.Unlock()
		<-ctx.Done()
		return "", ctx.Err()
	}
	return email, nil
}

func (p *countingPeople) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}

// The sponsor is off the DM's critical path: when the inviter is told,
// neither their Slack profile nor their Entra account has been read; the
// sponsor is recorded after. A second invitation by the same inviter
// reuses their account (one users.info, one directory lookup, per person).
func TestSponsorAfterTheDMAndCachedPerInviter(t *testing.T) {
	people := &countingPeople{email: map[string]string{inviter.UserID: "ann@contoso.com"}}
	e := &env{store: flowstest.NewStore(), dir: flowstest.NewDirectory(), note: &flowstest.Notifier{}, people: people}
	lookups := func() int {
		n := 0
		for _, c := range e.dir.Calls() {
			if c.Op == "FindUsers" && len(c.Args) > 0 && c.Args[0] == "ann@contoso.com" {
				n++
			}
		}
		return n
	}
	var atDM []int
	e.note.NotifyFunc = func(_ context.Context, n flows.Notice) error {
		if n.Kind == flows.NoticeDone {
			atDM = append(atDM, people.count()+lookups()+e.dir.Count("AddSponsor"))
		}
		return nil
	}
	e.svc = e.start(t)
	e.dir.AddUser(flows.DirectoryUser{ID: "u-ann", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com", UserType: flows.UserTypeMember})
	first := e.submit(t, "V1", request())
	r := request()
	r.Email = "carol@fabrikam.com"
	second := e.submit(t, "V2", r)
	for _, inv := range []*flows.Invitation{first, second} {
		if inv.State != flows.StateNotified || inv.SponsorDue || inv.Sponsor == nil || !inv.Sponsor.InEntra {
			t.Errorf("%s: %s, due %v, sponsor %+v; want notified with the sponsor set in Entra", inv.Request.Email, inv.State, inv.SponsorDue, inv.Sponsor)
		}
	}
	if len(atDM) != 2 || atDM[0] != 0 {
		t.Errorf("sponsor work done before the first DM: %v, want none", atDM)
	}
	if got := people.count(); got != 1 {
		t.Errorf("inviter's Slack email read %d times for two invitations, want 1 (cached)", got)
	}
	if got := lookups(); got != 1 {
		t.Errorf("inviter's Entra account looked up %d times for two invitations, want 1 (cached)", got)
	}
	if got := e.dir.Count("AddSponsor"); got != 2 {
		t.Errorf("AddSponsor = %d, want one per guest", got)
	}
}

// A stop after the DM and before the sponsor leaves the invitation
// notified with its sponsor due; the next start records it.
func TestSponsorResumedAfterAStop(t *testing.T) {
	held := make(chan struct{})
	people := &countingPeople{email: map[string]string{inviter.UserID: "ann@contoso.com"}, hold: true, held: held}
	e := &env{store: flowstest.NewStore(), dir: flowstest.NewDirectory(), note: &flowstest.Notifier{}, people: people}
	e.svc = e.start(t)
	e.dir.AddUser(flows.DirectoryUser{ID: "u-ann", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com", UserType: flows.UserTypeMember})
	inv, err := e.svc.Submit(t.Context(), "V1", inviter, request())
	if err != nil {
		t.Fatal(err)
	}
	select { // the sponsor step has begun, after the DM
	case <-held:
	case <-t.Context().Done():
		t.Fatal("the sponsor step never began")
	}
	e.svc.Close()
	if got := e.load(t, inv.ID); got.State != flows.StateNotified || !got.SponsorDue || got.Sponsor != nil {
		t.Fatalf("after the stop: %s, due %v, sponsor %+v; want notified with the sponsor due", got.State, got.SponsorDue, got.Sponsor)
	}
	people.mu.Lock()
	people.hold = false
	people.mu.Unlock()
	e.svc = e.start(t)
	e.svc.Wait()
	got := e.load(t, inv.ID)
	if got.SponsorDue || got.Sponsor == nil || !got.Sponsor.InEntra {
		t.Errorf("after the restart: due %v, sponsor %+v; want it set in Entra", got.SponsorDue, got.Sponsor)
	}
	if n := e.note.Count(flows.NoticeDone, inv.ID); n != 1 {
		t.Errorf("the inviter was told %d times, want once", n)
	}
}

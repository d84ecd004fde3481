package flowstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
)

// TestStore runs the store conformance suite (see the package comment)
// against the stores open returns: a new, empty one for each subtest t,
// closed by open's own t.Cleanup. If the store also implements
// flows.Leaser, the lease and its fencing are tested too; those tests wait
// for a 300ms lease to lapse on the store's own clock. If it implements
// flows.SignInStore, that contract is tested too.
func TestStore(t *testing.T, open func(t *testing.T) flows.Store) {
	t.Run("CreateAndRead", func(t *testing.T) { testCreateAndRead(t, open(t)) })
	t.Run("OriginKeyUnique", func(t *testing.T) { testOriginKeyUnique(t, open(t)) })
	t.Run("AddressInFlightUnique", func(t *testing.T) { testAddressInFlight(t, open(t)) })
	t.Run("UpdateOfOlderKeepsAddress", func(t *testing.T) { testUpdateOfOlderKeepsAddress(t, open(t)) })
	t.Run("UpdateRefusesSecondInFlight", func(t *testing.T) { testUpdateRefusesSecondInFlight(t, open(t)) })
	t.Run("UpdateAtomic", func(t *testing.T) { testUpdateAtomic(t, open(t)) })
	t.Run("UpdateConcurrent", func(t *testing.T) { testUpdateConcurrent(t, open(t)) })
	t.Run("CreateConcurrent", func(t *testing.T) { testCreateConcurrent(t, open(t)) })
	t.Run("Filters", func(t *testing.T) { testFilters(t, open(t)) })
	t.Run("Outbox", func(t *testing.T) { testOutbox(t, open(t)) })
	t.Run("AuditLog", func(t *testing.T) { testAuditLog(t, open(t)) })
	t.Run("Guests", func(t *testing.T) { testGuests(t, open(t)) })
	t.Run("SignInRecords", func(t *testing.T) {
		if _, ok := open(t).(flows.SignInStore); !ok {
			t.Skip("the store does not implement flows.SignInStore")
		}
		TestSignInStore(t, func(t *testing.T) flows.SignInStore { return open(t).(flows.SignInStore) })
	})
	t.Run("Lease", func(t *testing.T) {
		l, ok := open(t).(flows.Leaser)
		if !ok {
			t.Skip("the store does not implement flows.Leaser")
		}
		testLease(t, l)
	})
	t.Run("Fence", func(t *testing.T) {
		s := open(t)
		if _, ok := s.(flows.Leaser); !ok {
			t.Skip("the store does not implement flows.Leaser")
		}
		testFence(t, s)
	})
	t.Run("LeaseSweep", func(t *testing.T) {
		s := open(t)
		l, ok := s.(flows.Leaser)
		sw, ok2 := s.(flows.LeaseSweeper)
		if !ok || !ok2 {
			t.Skip("the store does not implement flows.Leaser and flows.LeaseSweeper")
		}
		testLeaseSweep(t, l, sw)
	})
}

// base is the suite's creation time: whole seconds, UTC, so every backend
// can keep it exactly.
var base = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// invitation returns a new invitation created n minutes after base, with
// its "requested" event.
func invitation(id string, o flows.Origin, email string, state flows.State, n int) *flows.Invitation {
	at := base.Add(time.Duration(n) * time.Minute)
	return &flows.Invitation{
		ID: id, Origin: o, State: state, CreatedAt: at, UpdatedAt: at,
		Inviter: flows.Inviter{TeamID: "T1", UserID: "UALICE"},
		Request: flows.Request{Email: email, Delivery: flows.DeliverySlackLink, UserType: flows.UserTypeGuest, Groups: []string{"g1"}},
		History: []flows.Event{{At: at, InvitationID: id, Actor: "UALICE", Action: "requested"}},
	}
}

func dialog(view string) flows.Origin { return flows.Origin{Kind: flows.OriginDialog, Key: view} }

func mustCreate(t *testing.T, s flows.Store, inv *flows.Invitation) *flows.Invitation {
	t.Helper()
	got, err := s.CreateInvitation(t.Context(), inv)
	if err != nil {
		t.Fatalf("CreateInvitation(%s): %v", inv.ID, err)
	}
	return got
}

func mustUpdate(t *testing.T, s flows.Store, id string, fn func(*flows.Invitation)) *flows.Invitation {
	t.Helper()
	got, err := s.UpdateInvitation(t.Context(), id, func(inv *flows.Invitation) error { fn(inv); return nil })
	if err != nil {
		t.Fatalf("UpdateInvitation(%s): %v", id, err)
	}
	return got
}

// finish moves id to state with an event, as the service does.
func finish(t *testing.T, s flows.Store, id string, state flows.State) {
	t.Helper()
	mustUpdate(t, s, id, func(inv *flows.Invitation) {
		inv.State = state
		inv.UpdatedAt = inv.UpdatedAt.Add(time.Second)
		inv.History = append(inv.History, flows.Event{At: inv.UpdatedAt, InvitationID: id, Actor: flows.ActorBot, Action: string(state)})
	})
}

// idOf names an invitation in a test failure.
func idOf(inv *flows.Invitation) string {
	if inv == nil {
		return "nil"
	}
	return "invitation " + inv.ID
}

func ids(invs []*flows.Invitation) []string {
	out := []string{}
	for _, inv := range invs {
		out = append(out, inv.ID)
	}
	return out
}

// same compares two invitations through their JSON: a backend returns
// what it was given (times in UTC, as the service writes them).
func same(a, b *flows.Invitation) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func list(t *testing.T, s flows.Store, f flows.InvitationFilter) []string {
	t.Helper()
	invs, err := s.Invitations(t.Context(), f)
	if err != nil {
		t.Fatalf("Invitations(%+v): %v", f, err)
	}
	return ids(invs)
}

func testCreateAndRead(t *testing.T, s flows.Store) {
	ctx := t.Context()
	in := invitation("a", dialog("V1"), "Bob@Fabrikam.com", flows.StateRequested, 0)
	in.Matches = []flows.DirectoryUser{{ID: "u1", Mail: "bob@fabrikam.com"}}
	in.Expiry = &flows.Expiry{At: base.Add(24 * time.Hour), Period: time.Hour}
	in.Approval = &flows.Approval{Approvers: []string{"UBOSS"}, Approved: map[string]string{"manager": "UBOSS"}}
	got := mustCreate(t, s, in)
	if !same(got, in) {
		t.Errorf("CreateInvitation returned %+v, want %+v", got, in)
	}
	read, err := s.Invitation(ctx, "a")
	if err != nil || !same(read, in) {
		t.Fatalf("Invitation(a) = %+v, %v; want %+v", read, err, in)
	}
	// Values are copies: changing what was returned changes nothing stored.
	read.Request.Groups[0] = "changed"
	read.Approval.Approved["manager"] = "changed"
	in.State = flows.StateFailed
	if again, _ := s.Invitation(ctx, "a"); again.Request.Groups[0] != "g1" || again.Approval.Approved["manager"] != "UBOSS" || again.State != flows.StateRequested {
		t.Errorf("the stored invitation changed with a returned or given value: %+v", again)
	}
	if _, err := s.Invitation(ctx, "nope"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("Invitation(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateInvitation(ctx, "nope", func(*flows.Invitation) error { return nil }); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("UpdateInvitation(unknown) = %v, want ErrNotFound", err)
	}
}

func testOriginKeyUnique(t *testing.T, s flows.Store) {
	ctx := t.Context()
	mustCreate(t, s, invitation("a", dialog("V1"), "bob@fabrikam.com", flows.StateRequested, 0))
	// The same view again, even for another address: the first one.
	got, err := s.CreateInvitation(ctx, invitation("b", dialog("V1"), "carol@fabrikam.com", flows.StateRequested, 1))
	if !errors.Is(err, flows.ErrDuplicate) || got == nil || got.ID != "a" {
		t.Errorf("same origin: %s, %v; want ErrDuplicate with a", idOf(got), err)
	}
	// Also once a finished: an origin submits once, ever.
	finish(t, s, "a", flows.StateFailed)
	if got, err := s.CreateInvitation(ctx, invitation("b", dialog("V1"), "bob@fabrikam.com", flows.StateRequested, 1)); !errors.Is(err, flows.ErrDuplicate) || got == nil || got.ID != "a" {
		t.Errorf("same origin after it failed: %s, %v; want ErrDuplicate with a", idOf(got), err)
	}
	// The same key from another kind of origin is another origin.
	bulk := flows.Origin{Kind: flows.OriginBulk, Key: "V1", Name: "guests.csv line 2"}
	mustCreate(t, s, invitation("c", bulk, "dan@fabrikam.com", flows.StateRequested, 2))
	// No key: nothing to deduplicate (conversions).
	conv := flows.Origin{Kind: flows.OriginConvert}
	mustCreate(t, s, invitation("d", conv, "erin@fabrikam.com", flows.StateRequested, 3))
	mustCreate(t, s, invitation("e", conv, "frank@fabrikam.com", flows.StateRequested, 4))
	if got := list(t, s, flows.InvitationFilter{}); !reflect.DeepEqual(got, []string{"a", "c", "d", "e"}) {
		t.Errorf("invitations = %v, want a c d e (nothing written for a duplicate)", got)
	}
	audit, err := s.AuditLog(ctx, time.Time{})
	if err != nil || len(audit) != 5 { // a: requested, failed; c, d, e: requested
		t.Errorf("audit = %d events, %v; want 5 (nothing written for a duplicate)", len(audit), err)
	}
}

func testAddressInFlight(t *testing.T, s flows.Store) {
	ctx := t.Context()
	mustCreate(t, s, invitation("a", dialog("V1"), "Bob@Fabrikam.com", flows.StateAwaitingPick, 0))
	got, err := s.CreateInvitation(ctx, invitation("b", dialog("V2"), " bob@fabrikam.COM", flows.StateRequested, 1))
	if !errors.Is(err, flows.ErrInFlight) || got == nil || got.ID != "a" {
		t.Errorf("same address in flight: %s, %v; want ErrInFlight with a", idOf(got), err)
	}
	// Another address is independent.
	mustCreate(t, s, invitation("c", dialog("V3"), "carol@fabrikam.com", flows.StateRequested, 2))
	// Once finished, the address may be invited again; the view V2 was not used.
	finish(t, s, "a", flows.StateNotified)
	mustCreate(t, s, invitation("b", dialog("V2"), "bob@fabrikam.com", flows.StateRequested, 3))
	got, err = s.CreateInvitation(ctx, invitation("d", dialog("V4"), "bob@fabrikam.com", flows.StateRequested, 4))
	if !errors.Is(err, flows.ErrInFlight) || got == nil || got.ID != "b" {
		t.Errorf("address in flight again: %s, %v; want ErrInFlight with b", idOf(got), err)
	}
}

// Ensure that updating an older, finished invitation for an address does
// not hide a newer one in flight: a third invitation is still refused.
func testUpdateOfOlderKeepsAddress(t *testing.T, s flows.Store) {
	ctx := t.Context()
	mustCreate(t, s, invitation("old", dialog("V1"), "bob@fabrikam.com", flows.StateRequested, 0))
	finish(t, s, "old", flows.StateNotified)
	mustCreate(t, s, invitation("new", dialog("V2"), "bob@fabrikam.com", flows.StateRequested, 1))
	// The tracker records the old guest's acceptance.
	finish(t, s, "old", flows.StateAccepted)
	got, err := s.CreateInvitation(ctx, invitation("third", dialog("V3"), "bob@fabrikam.com", flows.StateRequested, 2))
	if !errors.Is(err, flows.ErrInFlight) || got == nil || got.ID != "new" {
		t.Errorf("third invitation after the older one's update: %s, %v; want ErrInFlight with new", idOf(got), err)
	}
	// And the newer one finishing frees the address.
	finish(t, s, "new", flows.StateFailed)
	mustUpdate(t, s, "old", func(inv *flows.Invitation) { inv.Tracking.Resends++ })
	mustCreate(t, s, invitation("third", dialog("V3"), "bob@fabrikam.com", flows.StateRequested, 2))
	if got := list(t, s, flows.InvitationFilter{Unfinished: true}); !reflect.DeepEqual(got, []string{"third"}) {
		t.Errorf("unfinished = %v, want [third]", got)
	}
}

// Ensure that reviving a finished invitation while another is in flight
// for its address is refused and writes nothing.
func testUpdateRefusesSecondInFlight(t *testing.T, s flows.Store) {
	ctx := t.Context()
	mustCreate(t, s, invitation("old", dialog("V1"), "bob@fabrikam.com", flows.StateRequested, 0))
	finish(t, s, "old", flows.StateFailed)
	mustCreate(t, s, invitation("new", dialog("V2"), "bob@fabrikam.com", flows.StateRequested, 1))
	_, err := s.UpdateInvitation(ctx, "old", func(inv *flows.Invitation) error {
		inv.State = flows.StateInviting
		inv.History = append(inv.History, flows.Event{At: base, InvitationID: "old", Action: "revived"})
		return nil
	})
	if !errors.Is(err, flows.ErrInFlight) {
		t.Errorf("reviving old while new is in flight: %v, want ErrInFlight", err)
	}
	if inv, _ := s.Invitation(ctx, "old"); inv == nil || inv.State != flows.StateFailed {
		t.Errorf("old after the refused update = %+v, want failed", inv)
	}
	if audit, _ := s.AuditLog(ctx, time.Time{}); len(audit) != 3 {
		t.Errorf("audit = %d events, want 3 (nothing written for the refused update)", len(audit))
	}
	// Once new has finished, old may be revived, and it holds the address.
	finish(t, s, "new", flows.StateFailed)
	mustUpdate(t, s, "old", func(inv *flows.Invitation) { inv.State = flows.StateInviting })
	if got, err := s.CreateInvitation(ctx, invitation("third", dialog("V3"), "bob@fabrikam.com", flows.StateRequested, 2)); !errors.Is(err, flows.ErrInFlight) || got == nil || got.ID != "old" {
		t.Errorf("third while old is revived: %s, %v; want ErrInFlight with old", idOf(got), err)
	}
}

func testUpdateAtomic(t *testing.T, s flows.Store) {
	ctx := t.Context()
	mustCreate(t, s, invitation("a", dialog("V1"), "bob@fabrikam.com", flows.StateRequested, 0))
	boom := errors.New("boom")
	_, err := s.UpdateInvitation(ctx, "a", func(inv *flows.Invitation) error {
		inv.State = flows.StateFailed
		inv.History = append(inv.History, flows.Event{At: base, InvitationID: "a", Action: "failed"})
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("update error = %v, want boom", err)
	}
	if inv, _ := s.Invitation(ctx, "a"); inv.State != flows.StateRequested || len(inv.History) != 1 {
		t.Errorf("after a failed update: state %s, %d events; want requested, 1", inv.State, len(inv.History))
	}
	if audit, _ := s.AuditLog(ctx, time.Time{}); len(audit) != 1 {
		t.Errorf("audit after a failed update = %d events, want 1", len(audit))
	}
	got := mustUpdate(t, s, "a", func(inv *flows.Invitation) { inv.State = flows.StateChecking; inv.ObjectID = "u1" })
	if got.State != flows.StateChecking || got.ObjectID != "u1" {
		t.Errorf("UpdateInvitation returned %+v", got)
	}
	if inv, _ := s.Invitation(ctx, "a"); !same(inv, got) {
		t.Errorf("stored %+v, returned %+v", inv, got)
	}
}

// Ensure that concurrent updates of one invitation lose nothing: each
// increments a counter and appends an event.
func testUpdateConcurrent(t *testing.T, s flows.Store) {
	const n = 20
	mustCreate(t, s, invitation("a", dialog("V1"), "bob@fabrikam.com", flows.StateRequested, 0))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.UpdateInvitation(t.Context(), "a", func(inv *flows.Invitation) error {
				inv.InviteAttempt++
				inv.History = append(inv.History, flows.Event{At: base.Add(time.Duration(i) * time.Second), InvitationID: "a", Action: "attempt"})
				return nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	inv, err := s.Invitation(t.Context(), "a")
	if err != nil || inv.InviteAttempt != n || len(inv.History) != n+1 {
		t.Fatalf("after %d concurrent updates: attempts %d, %d events, %v", n, inv.InviteAttempt, len(inv.History), err)
	}
	if audit, _ := s.AuditLog(t.Context(), time.Time{}); len(audit) != n+1 {
		t.Errorf("audit = %d events, want %d", len(audit), n+1)
	}
}

// Ensure that concurrent submissions of one origin, or for one address,
// create one invitation.
func testCreateConcurrent(t *testing.T, s flows.Store) {
	const n = 10
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created []string
		bad     []error
	)
	run := func(id string, o flows.Origin, email string) {
		wg.Go(func() {
			got, err := s.CreateInvitation(context.WithoutCancel(t.Context()), invitation(id, o, email, flows.StateRequested, 0))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created = append(created, got.ID)
			case !errors.Is(err, flows.ErrDuplicate) && !errors.Is(err, flows.ErrInFlight) || got == nil:
				bad = append(bad, err)
			}
		})
	}
	for i := range n {
		run(fmt.Sprintf("same-view-%d", i), dialog("V1"), fmt.Sprintf("user%d@fabrikam.com", i))
		run(fmt.Sprintf("same-address-%d", i), dialog(fmt.Sprintf("W%d", i)), "bob@fabrikam.com")
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("unexpected errors: %v", bad)
	}
	views, addrs := 0, 0
	for _, id := range created {
		if len(id) > 9 && id[:9] == "same-view" {
			views++
		} else {
			addrs++
		}
	}
	if views != 1 || addrs != 1 {
		t.Errorf("created %v: %d for one view and %d for one address, want 1 each", created, views, addrs)
	}
}

func testFilters(t *testing.T, s flows.Store) {
	bulk := func(key string) flows.Origin {
		return flows.Origin{Kind: flows.OriginBulk, Key: key, Name: "guests.csv line " + key}
	}
	// Created out of ID order; listed by CreatedAt, then ID.
	mustCreate(t, s, invitation("c", bulk("2"), "carol@fabrikam.com", flows.StateRequested, 1))
	mustCreate(t, s, invitation("a", dialog("V1"), "Bob@Fabrikam.com", flows.StateRequested, 0))
	mustCreate(t, s, invitation("b", bulk("1"), "dan@fabrikam.com", flows.StateRequested, 1))
	other := invitation("d", dialog("V2"), "erin@fabrikam.com", flows.StateRequested, 3)
	other.Inviter.UserID = "UBEN"
	mustCreate(t, s, other)
	mustCreate(t, s, invitation("e", flows.Origin{Kind: flows.OriginConvert}, "frank@fabrikam.com", flows.StateRequested, 4))
	finish(t, s, "a", flows.StateFailed)
	mustCreate(t, s, invitation("f", dialog("V3"), "bob@fabrikam.com", flows.StateAwaitingApproval, 5))
	mustUpdate(t, s, "c", func(inv *flows.Invitation) { inv.State, inv.ObjectID = flows.StateNotified, "u-carol" })
	mustUpdate(t, s, "e", func(inv *flows.Invitation) {
		inv.State, inv.ObjectID, inv.Tracking.External = flows.StateNotified, "u-frank", flows.ExternalAccepted
		inv.SponsorDue = true
	})
	for _, tc := range []struct {
		name string
		f    flows.InvitationFilter
		want []string
	}{
		{"All", flows.InvitationFilter{}, []string{"a", "b", "c", "d", "e", "f"}},
		{"OriginKind", flows.InvitationFilter{OriginKind: flows.OriginBulk}, []string{"b", "c"}},
		{"OriginKey", flows.InvitationFilter{OriginKind: flows.OriginDialog, OriginKey: "V2"}, []string{"d"}},
		{"OriginKeyOtherKind", flows.InvitationFilter{OriginKind: flows.OriginDialog, OriginKey: "1"}, []string{}},
		{"Inviter", flows.InvitationFilter{Inviter: "UBEN"}, []string{"d"}},
		{"EmailsNormalised", flows.InvitationFilter{Emails: []string{"BOB@fabrikam.com", "dan@fabrikam.com"}}, []string{"a", "b", "f"}},
		{"States", flows.InvitationFilter{States: []flows.State{flows.StateNotified, flows.StateFailed}}, []string{"a", "c", "e"}},
		{"Unfinished", flows.InvitationFilter{Unfinished: true}, []string{"b", "d", "f"}},
		// c: acceptance pending; f: waits for an approver; e accepted: no.
		{"Tracked", flows.InvitationFilter{Tracked: true}, []string{"c", "f"}},
		{"SponsorDue", flows.InvitationFilter{SponsorDue: true}, []string{"e"}},
		{"Combined", flows.InvitationFilter{Inviter: "UALICE", Unfinished: true, OriginKind: flows.OriginBulk}, []string{"b"}},
		{"LimitKeepsNewest", flows.InvitationFilter{Limit: 2}, []string{"e", "f"}},
		{"LimitAfterFilter", flows.InvitationFilter{Inviter: "UALICE", Limit: 3}, []string{"c", "e", "f"}},
		{"LimitAboveCount", flows.InvitationFilter{OriginKind: flows.OriginBulk, Limit: 10}, []string{"b", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := list(t, s, tc.f); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Invitations(%+v) = %v, want %v", tc.f, got, tc.want)
			}
			// The store selects what the filter's Match selects.
			all, _ := s.Invitations(t.Context(), flows.InvitationFilter{})
			f := tc.f
			f.Limit = 0
			want := []string{}
			for _, inv := range all {
				if f.Match(inv) {
					want = append(want, inv.ID)
				}
			}
			if tc.f.Limit > 0 && len(want) > tc.f.Limit {
				want = want[len(want)-tc.f.Limit:]
			}
			if !reflect.DeepEqual(want, tc.want) {
				t.Errorf("Match selects %v, want %v", want, tc.want)
			}
		})
	}
}

// Ensure that notices recorded in an invitation's outbox are kept with the
// change that caused them, listed for the background cycle until struck
// off, and struck off exactly once.
func testOutbox(t *testing.T, s flows.Store) {
	ctx := t.Context()
	mustCreate(t, s, invitation("a", dialog("V1"), "bob@fabrikam.com", flows.StateRequested, 0))
	mustUpdate(t, s, "a", func(inv *flows.Invitation) {
		inv.State = flows.StateFailed
		inv.Failure = &flows.Failure{Code: flows.FailRejected, Step: flows.StateInviting}
		inv.Outbox = append(inv.Outbox, flows.Outgoing{Kind: flows.NoticeFailed, At: base.Add(time.Minute)},
			flows.Outgoing{Kind: flows.NoticeApprovalRequested, At: base.Add(time.Minute), To: "C1"})
	})
	if got := list(t, s, flows.InvitationFilter{Tracked: true}); !reflect.DeepEqual(got, []string{"a"}) {
		t.Errorf("tracked with an outbox = %v, want [a]", got)
	}
	strike := func(kind flows.NoticeKind) error {
		_, err := s.UpdateInvitation(ctx, "a", func(inv *flows.Invitation) error {
			for i, o := range inv.Outbox {
				if o.Kind == kind {
					inv.Outbox = append(inv.Outbox[:i], inv.Outbox[i+1:]...)
					return nil
				}
			}
			return flows.ErrWrongState
		})
		return err
	}
	if err := strike(flows.NoticeFailed); err != nil {
		t.Fatal(err)
	}
	if err := strike(flows.NoticeFailed); !errors.Is(err, flows.ErrWrongState) {
		t.Errorf("striking a notice twice: %v, want ErrWrongState", err)
	}
	inv, _ := s.Invitation(ctx, "a")
	if len(inv.Outbox) != 1 || inv.Outbox[0].To != "C1" || inv.Failure == nil || inv.Failure.Code != flows.FailRejected {
		t.Errorf("outbox = %+v, failure %+v", inv.Outbox, inv.Failure)
	}
	if err := strike(flows.NoticeApprovalRequested); err != nil {
		t.Fatal(err)
	}
	if got := list(t, s, flows.InvitationFilter{Tracked: true}); len(got) != 0 {
		t.Errorf("tracked with an empty outbox = %v, want none", got)
	}
}

// Ensure that the audit log has every invitation's events in the order
// they were written, and filters by time.
func testAuditLog(t *testing.T, s flows.Store) {
	ctx := t.Context()
	mustCreate(t, s, invitation("a", dialog("V1"), "bob@fabrikam.com", flows.StateRequested, 0))
	mustCreate(t, s, invitation("b", dialog("V2"), "carol@fabrikam.com", flows.StateRequested, 1))
	mustUpdate(t, s, "a", func(inv *flows.Invitation) {
		inv.History = append(inv.History,
			flows.Event{At: base.Add(2 * time.Minute), InvitationID: "a", Actor: flows.ActorBot, Action: "checking"},
			flows.Event{At: base.Add(3 * time.Minute), InvitationID: "a", Actor: flows.ActorBot, Action: "inviting", Detail: "d"})
	})
	mustUpdate(t, s, "b", func(inv *flows.Invitation) { inv.State = flows.StateChecking }) // no new event
	mustUpdate(t, s, "b", func(inv *flows.Invitation) {
		inv.History = append(inv.History, flows.Event{At: base.Add(4 * time.Minute), InvitationID: "b", ObjectID: "u1", Actor: "UBOSS", Action: "approved"})
	})
	audit, err := s.AuditLog(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range audit {
		got = append(got, e.InvitationID+":"+e.Action)
	}
	want := []string{"a:requested", "b:requested", "a:checking", "a:inviting", "b:approved"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("audit = %v, want %v", got, want)
	}
	if last := audit[len(audit)-1]; !last.At.Equal(base.Add(4*time.Minute)) || last.ObjectID != "u1" || last.Actor != "UBOSS" {
		t.Errorf("last event = %+v", last)
	}
	if audit[3].Detail != "d" {
		t.Errorf("event detail = %q, want d", audit[3].Detail)
	}
	since, err := s.AuditLog(ctx, base.Add(3*time.Minute))
	if err != nil || len(since) != 2 || since[0].Action != "inviting" {
		t.Errorf("audit since +3m = %+v, %v; want inviting, approved", since, err)
	}
}

func testGuests(t *testing.T, s flows.Store) {
	ctx := t.Context()
	if _, err := s.Guest(ctx, "o1"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("Guest(unknown) = %v, want ErrNotFound", err)
	}
	g := flows.Guest{ObjectID: "o1", Email: "bob@fabrikam.com", UserType: flows.UserTypeGuest, Groups: []string{"g1"},
		InvitedBy: flows.Inviter{TeamID: "T1", UserID: "UALICE"}, InvitationID: "a", CreatedAt: base, UpdatedAt: base,
		Sponsor: &flows.Sponsor{SlackUser: "UALICE", InEntra: true}}
	if err := s.SaveGuest(ctx, g); err != nil {
		t.Fatal(err)
	}
	got, err := s.Guest(ctx, "o1")
	if err != nil || !reflect.DeepEqual(jsonOf(got), jsonOf(&g)) {
		t.Errorf("Guest = %+v, %v; want %+v", got, err, g)
	}
	got.Groups[0] = "changed"
	g.State, g.Groups = flows.StateAccepted, []string{"g1", "g2"}
	if err := s.SaveGuest(ctx, g); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Guest(ctx, "o1"); got.State != flows.StateAccepted || !reflect.DeepEqual(got.Groups, []string{"g1", "g2"}) {
		t.Errorf("replaced guest = %+v", got)
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

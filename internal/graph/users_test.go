package graph_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
)

func TestUserByIDAndUPN(t *testing.T) {
	f := newFixture(t, secret)
	ctx := t.Context()
	const upn = "bob_x.com#EXT#@contoso.onmicrosoft.com"
	f.tenant.AddUser(graphfake.User{ID: "g1", DisplayName: "Bob", Mail: "bob@x.com", UserPrincipalName: upn, UserType: "Guest",
		ExternalUserState: "PendingAcceptance", ExternalUserStateChangeDateTime: time.Now()})
	f.tenant.AddUser(graphfake.User{ID: "m1", DisplayName: "Ann", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com",
		UserType: "Member", OnPremisesUserPrincipalName: "ann@corp.contoso.local"})

	want := flows.DirectoryUser{ID: "g1", DisplayName: "Bob", Mail: "bob@x.com", UserPrincipalName: upn, UserType: "Guest", ExternalUserState: "PendingAcceptance"}
	for _, key := range []string{"g1", upn, strings.ToUpper(upn)} {
		got, err := f.client.User(ctx, key)
		if err != nil || got != want {
			t.Errorf("User(%q) = %+v, %v; want %+v", key, got, err, want)
		}
	}
	got, err := f.client.User(ctx, "ann@contoso.com")
	if err != nil || got.OnPremisesUserPrincipalName != "ann@corp.contoso.local" || got.UserType != "Member" || got.ExternalUserState != "" {
		t.Errorf("User(ann) = %+v, %v", got, err)
	}
	if _, err := f.client.User(ctx, "nobody@contoso.com"); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("unknown UPN: %v, want ErrNotFound", err)
	}
	// The UPN reached the tenant as one path segment ('#' escaped, not a
	// fragment), with the $select the port promises.
	reqs := f.tenant.Requests()
	if r := reqs[1]; r.Path != "/v1.0/users/"+upn || !strings.Contains(r.RawQuery, "$select=") ||
		!strings.Contains(r.RawQuery, "onPremisesUserPrincipalName") || !strings.Contains(r.RawQuery, "externalUserState") {
		t.Errorf("request = %+v", r)
	}
}

func TestDeleteUserAndRemoveGroupMember(t *testing.T) {
	f := newFixture(t, secret)
	ctx := t.Context()
	u := f.tenant.AddUser(graphfake.User{DisplayName: "Bob"})
	g1, g2 := f.tenant.AddGroup("A"), f.tenant.AddGroup("B")
	for _, g := range []string{g1, g2} {
		if err := f.client.AddGroupMember(ctx, g, u.ID); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // the second time: not a member (404) is success
		if err := f.client.RemoveGroupMember(ctx, g1, u.ID); err != nil {
			t.Errorf("RemoveGroupMember: %v", err)
		}
	}
	if m := f.tenant.GroupMembers(g1); len(m) != 0 {
		t.Errorf("members of g1 = %v", m)
	}
	f.tenant.Fail(graphfake.RouteRemoveMember, 1, graphfake.Throttled("1"))
	var de *flows.DirectoryError
	if err := f.client.RemoveGroupMember(ctx, g2, u.ID); !errors.As(err, &de) || !de.Throttled() || de.RetryAfter != time.Second {
		t.Errorf("throttled remove: %v", err)
	}
	if err := f.client.DeleteUser(ctx, u.ID); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if _, ok := f.tenant.User(u.ID); ok {
		t.Error("user still exists")
	}
	if m := f.tenant.GroupMembers(g2); len(m) != 0 {
		t.Errorf("a deleted user is still a member of g2: %v", m)
	}
	if err := f.client.DeleteUser(ctx, u.ID); !errors.Is(err, flows.ErrNotFound) || !errors.As(err, &de) || de.Code != "Request_ResourceNotFound" {
		t.Errorf("DeleteUser twice: %v, want ErrNotFound", err)
	}
}

func TestExternalStatesBatch(t *testing.T) {
	f := newFixture(t, secret)
	ctx := t.Context()
	changed := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	var ids []string
	kind := map[string]string{}
	for i := range flows.MaxStatesPerRequest {
		id := fmt.Sprintf("user-%02d", i)
		ids = append(ids, id)
		switch i % 4 {
		case 0:
			kind[id] = "pending"
			f.tenant.AddUser(graphfake.User{ID: id, ExternalUserState: "PendingAcceptance", ExternalUserStateChangeDateTime: changed.Add(-time.Hour)})
		case 1:
			kind[id] = "accepted"
			f.tenant.AddUser(graphfake.User{ID: id, ExternalUserState: "Accepted", ExternalUserStateChangeDateTime: changed})
		case 2:
			kind[id] = "null"
			f.tenant.AddUser(graphfake.User{ID: id, UserType: "Guest"})
		case 3:
			kind[id] = "missing"
		}
	}
	// The first item the tenant runs (ids[0]) is throttled inside the batch.
	f.tenant.Fail(graphfake.RouteGetUser, 1, graphfake.Throttled("2.128"))
	kind[ids[0]] = "throttled"

	states, err := f.client.ExternalStates(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != len(ids) {
		t.Fatalf("%d states for %d ids", len(states), len(ids))
	}
	seen := map[string]bool{}
	for _, s := range states {
		seen[s.UserID] = true
		var de *flows.DirectoryError
		switch kind[s.UserID] {
		case "pending":
			if s.Err != nil || s.State != "PendingAcceptance" || !s.ChangedAt.Equal(changed.Add(-time.Hour)) {
				t.Errorf("pending %+v", s)
			}
		case "accepted":
			if s.Err != nil || s.State != "Accepted" || !s.ChangedAt.Equal(changed) {
				t.Errorf("accepted %+v", s)
			}
		case "null":
			if s.Err != nil || s.State != "" || !s.ChangedAt.IsZero() {
				t.Errorf("null %+v", s)
			}
		case "missing":
			if !errors.Is(s.Err, flows.ErrNotFound) || !errors.As(s.Err, &de) || de.Code != "Request_ResourceNotFound" ||
				de.Op != "read user state" || !strings.Contains(de.Message, s.UserID) {
				t.Errorf("missing %+v", s)
			}
		case "throttled":
			if !errors.As(s.Err, &de) || !de.Throttled() || de.RetryAfter != 2128*time.Millisecond || de.Code != "TooManyRequests" || de.Message == "" {
				t.Errorf("throttled %+v (%#v)", s, s.Err)
			}
		default:
			t.Errorf("unexpected %+v", s)
		}
	}
	if len(seen) != len(ids) {
		t.Errorf("states for %d distinct ids, want %d", len(seen), len(ids))
	}
	// One HTTP request at the tenant, carrying 20 items, with a token.
	reqs := f.tenant.Requests()
	if len(reqs) != 1 || reqs[0].Method != "POST" || reqs[0].Path != "/v1.0/$batch" || reqs[0].Items != len(ids) || !reqs[0].Authorization {
		t.Errorf("requests = %+v, want one authorised POST /$batch with %d items", reqs, len(ids))
	}
	items := f.tenant.BatchItems()
	if len(items) != len(ids) || items[0].Path != "/v1.0/users/"+ids[0] || items[0].RawQuery != "$select=id,externalUserState,externalUserStateChangeDateTime" {
		t.Errorf("batch items = %+v", items)
	}
}

func TestExternalStatesFailures(t *testing.T) {
	f := newFixture(t, secret)
	ctx := t.Context()
	f.tenant.AddUser(graphfake.User{ID: "a", ExternalUserState: "Accepted"})

	if s, err := f.client.ExternalStates(ctx, nil); s != nil || err != nil {
		t.Errorf("no ids: %v, %v", s, err)
	}
	if _, err := f.client.ExternalStates(ctx, make([]string, flows.MaxStatesPerRequest+1)); err == nil {
		t.Error("21 ids accepted")
	}
	if n := len(f.tenant.Requests()); n != 0 {
		t.Errorf("%d requests for nothing to do", n)
	}

	f.tenant.Fail(graphfake.RouteBatch, 1, graphfake.Throttled("3"))
	_, err := f.client.ExternalStates(ctx, []string{"a"})
	var de *flows.DirectoryError
	if !errors.As(err, &de) || !de.Throttled() || de.RetryAfter != 3*time.Second || de.Code != "TooManyRequests" || de.Op != "read user state" {
		t.Errorf("whole batch throttled: %#v", err)
	}
	f.tenant.Fail(graphfake.RouteBatch, 1, graphfake.Unavailable())
	if _, err := f.client.ExternalStates(ctx, []string{"a"}); !errors.As(err, &de) || de.Status != 503 || !de.Temporary() {
		t.Errorf("whole batch 503: %#v", err)
	}
	if n := len(f.tenant.Requests()); n != 2 {
		t.Errorf("%d requests, want 2 (no SDK retry)", n)
	}
	// The same user twice is answered twice.
	s, err := f.client.ExternalStates(ctx, []string{"a", "a"})
	if err != nil || len(s) != 2 || s[0].State != "Accepted" || s[1].State != "Accepted" {
		t.Errorf("duplicate ids: %+v, %v", s, err)
	}
}

func TestAddSponsor(t *testing.T) {
	f := newFixture(t, secret)
	ctx := t.Context()
	guest := f.tenant.AddUser(graphfake.User{DisplayName: "Bob", Mail: "bob@fabrikam.com", UserType: "Guest"})
	ann := f.tenant.AddUser(graphfake.User{DisplayName: "Ann", Mail: "ann@contoso.com", UserType: "Member"})
	if err := f.client.AddSponsor(ctx, guest.ID, ann.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.client.AddSponsor(ctx, guest.ID, ann.ID); err != nil {
		t.Errorf("adding the same sponsor again: %v, want nil (already a sponsor)", err)
	}
	if got := f.tenant.Sponsors(guest.ID); len(got) != 1 || got[0] != ann.ID {
		t.Errorf("sponsors = %v", got)
	}
	if err := f.client.AddSponsor(ctx, "missing", ann.ID); !errors.Is(err, flows.ErrNotFound) {
		t.Errorf("sponsor for a missing user: %v, want ErrNotFound", err)
	}
	var authed bool
	for _, r := range f.tenant.Requests() {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/users/"+guest.ID+"/sponsors/$ref") {
			authed = r.Authorization
		}
	}
	if !authed {
		t.Error("no authorised POST /users/{id}/sponsors/$ref reached the tenant")
	}
}

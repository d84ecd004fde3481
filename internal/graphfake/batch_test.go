package graphfake

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

type item struct {
	ID      string            `json:"id"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    map[string]any    `json:"body"`
}

// batch posts a JSON batch and returns the call and its items by id.
func batch(t *testing.T, s *Server, reqs ...map[string]any) (call, map[string]item) {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"requests": reqs})
	c := do(t, s, "good", "POST", "/$batch", string(raw))
	items := map[string]item{}
	if c.status == 200 {
		var order []string
		list, _ := c.body["responses"].([]any)
		for _, x := range list {
			b, _ := json.Marshal(x)
			var it item
			if err := json.Unmarshal(b, &it); err != nil {
				t.Fatal(err)
			}
			items[it.ID] = it
			order = append(order, it.ID)
		}
		if len(order) != len(reqs) {
			t.Fatalf("%d responses for %d requests", len(order), len(reqs))
		}
	}
	return c, items
}

func get(id, url string) map[string]any { return map[string]any{"id": id, "method": "GET", "url": url} }

func TestBatchShapeAndCounting(t *testing.T) {
	tn, s := newServer(t)
	tn.AddUser(User{ID: "a", ExternalUserState: "Accepted", ExternalUserStateChangeDateTime: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)})
	tn.AddUser(User{ID: "n"})
	g := tn.AddGroup("G")
	c, items := batch(t, s,
		get("1", "/users/a?$select=id,externalUserState,externalUserStateChangeDateTime"),
		get("2", "users/n?%24select=externalUserState,externalUserStateChangeDateTime"), // no leading slash, encoded $
		get("3", "/users/missing"),
		map[string]any{"id": "4", "method": "POST", "url": "/groups/" + g + "/members/$ref",
			"headers": map[string]string{"Content-Type": "application/json"},
			"body":    map[string]any{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/a"}},
		get("5", "/nowhere"),
		get("6", "https://graph.microsoft.com/v1.0/users/a"),
		map[string]any{"id": "7", "method": "POST", "url": "/$batch", "headers": map[string]string{"Content-Type": "application/json"}, "body": map[string]any{}},
	)
	if c.status != 200 {
		t.Fatalf("batch: %d %v", c.status, c.body)
	}
	if it := items["1"]; it.Status != 200 || it.Body["externalUserState"] != "Accepted" ||
		it.Body["externalUserStateChangeDateTime"] != "2025-01-02T03:04:05Z" || it.Headers["Content-Type"] != "application/json" {
		t.Errorf("item 1 = %+v", it)
	}
	if it := items["2"]; it.Status != 200 || it.Body["id"] != "n" || len(it.Body) != 4 { // @odata.context, id and two nulls
		t.Errorf("item 2 = %+v", it)
	} else if v, ok := it.Body["externalUserState"]; !ok || v != nil {
		t.Errorf("item 2: externalUserState = %v (present %v), want an explicit null", v, ok)
	}
	if it := items["3"]; it.Status != 404 || fmt.Sprint(it.Body["error"].(map[string]any)["code"]) != "Request_ResourceNotFound" {
		t.Errorf("item 3 = %+v", it)
	}
	if it := items["4"]; it.Status != 204 || it.Body != nil {
		t.Errorf("item 4 = %+v", it)
	}
	if m := tn.GroupMembers(g); len(m) != 1 || m[0] != "a" {
		t.Errorf("members after batched add = %v", m)
	}
	for _, id := range []string{"5", "6", "7"} {
		if it := items[id]; it.Status < 400 || it.Body["error"] == nil {
			t.Errorf("item %s = %+v, want a Graph error", id, it)
		}
	}
	// Answers are not in request order: clients must correlate by id.
	if first := c.body["responses"].([]any)[0].(map[string]any)["id"]; first == "1" {
		t.Error("answers in request order")
	}
	reqs := tn.Requests()
	if len(reqs) != 1 || reqs[0].Path != "/v1.0/$batch" || reqs[0].Items != 7 || reqs[0].Status != 200 {
		t.Errorf("requests = %+v, want one batch of 7", reqs)
	}
	bi := tn.BatchItems()
	if len(bi) != 7 || bi[0].BatchID != "1" || bi[0].Path != "/v1.0/users/a" || bi[1].Path != "/v1.0/users/n" || bi[2].Status != 404 {
		t.Errorf("batch items = %+v", bi)
	}
}

func TestBatchRefused(t *testing.T) {
	tn, s := newServer(t)
	var many []map[string]any
	for i := range MaxBatchRequests + 1 {
		many = append(many, get(fmt.Sprint(i), "/users/x"))
	}
	tests := map[string][]map[string]any{
		"21 requests":   many,
		"duplicate ids": {get("a", "/users/x"), get("A", "/users/y")},
		"empty":         {},
		"no url":        {{"id": "1", "method": "GET"}},
		"body without content type": {{"id": "1", "method": "PATCH", "url": "/users/x",
			"body": map[string]any{"jobTitle": "x"}}},
		"unknown dependency": {{"id": "1", "method": "GET", "url": "/users/x", "dependsOn": []string{"2"}}},
	}
	for name, reqs := range tests {
		c, _ := batch(t, s, reqs...)
		if c.status != 400 || graphErr(t, c) != "BadRequest" {
			t.Errorf("%s: %d %v", name, c.status, c.body)
		}
	}
	if c := do(t, s, "good", "POST", "/$batch", "{"); c.status != 400 || graphErr(t, c) != "BadRequest" {
		t.Errorf("malformed: %d %v", c.status, c.body)
	}
	if len(tn.BatchItems()) != 0 {
		t.Errorf("a refused batch ran items: %+v", tn.BatchItems())
	}
	if c := do(t, s, "", "POST", "/$batch", `{"requests":[{"id":"1","method":"GET","url":"/organization"}]}`); c.status != 401 {
		t.Errorf("batch without token: %d", c.status)
	}
}

func TestBatchFaults(t *testing.T) {
	tn, s := newServer(t)
	tn.AddUser(User{ID: "a"})
	tn.AddUser(User{ID: "b"})
	// A fault on the item's route throttles items inside the batch.
	tn.Fail(RouteGetUser, 1, Throttled("2.128"))
	c, items := batch(t, s, get("1", "/users/a"), get("2", "/users/b"))
	if c.status != 200 {
		t.Fatalf("batch: %d", c.status)
	}
	if it := items["1"]; it.Status != 429 || it.Headers["Retry-After"] != "2.128" ||
		it.Body["error"].(map[string]any)["code"] != "TooManyRequests" {
		t.Errorf("throttled item = %+v", it)
	}
	if it := items["2"]; it.Status != 200 {
		t.Errorf("second item = %+v", it)
	}
	// A fault on POST /$batch fails the whole batch; no item runs.
	tn.Fail(RouteBatch, 1, Throttled("3"))
	c, _ = batch(t, s, get("1", "/users/a"))
	if c.status != 429 || c.header.Get("Retry-After") != "3" || graphErr(t, c) != "TooManyRequests" {
		t.Errorf("throttled batch: %d %v", c.status, c.body)
	}
	if n := len(tn.BatchItems()); n != 2 {
		t.Errorf("%d items ran, want 2 (the throttled batch ran none)", n)
	}
	// An outage of every route fails batches too.
	tn.Fail("", 1, Unavailable())
	if c, _ := batch(t, s, get("1", "/users/a")); c.status != 503 {
		t.Errorf("outage: %d", c.status)
	}
	// A failed item fails the items that depend on it (424).
	c, items = batch(t, s, get("1", "/users/missing"),
		map[string]any{"id": "2", "method": "GET", "url": "/users/a", "dependsOn": []string{"1"}})
	if c.status != 200 || items["1"].Status != 404 || items["2"].Status != 424 {
		t.Errorf("dependsOn: %d %+v", c.status, items)
	}
	// Replication delay applies to items.
	tn.Reset()
	tn.SetReplicationDelay(1)
	inv := do(t, s, "good", "POST", "/invitations", invite)
	id := inv.body["invitedUser"].(map[string]any)["id"].(string)
	_, items = batch(t, s, get("1", "/users/"+id), get("2", "/users/"+id))
	if items["1"].Status != 404 || items["2"].Status != 200 {
		t.Errorf("replication: %d then %d, want 404 then 200", items["1"].Status, items["2"].Status)
	}
	// Latency: the batch waits once, for its slowest route.
	tn.SetLatency(RouteGetUser, 50*time.Millisecond)
	start := time.Now()
	batch(t, s, get("1", "/users/a"), get("2", "/users/b"), get("3", "/users/a"), get("4", "/users/b"))
	if d := time.Since(start); d < 50*time.Millisecond || d > 180*time.Millisecond {
		t.Errorf("batch of 4 slow items took %v, want about 50ms", d)
	}
}

func TestGetUserByUPNAndSelect(t *testing.T) {
	tn, s := newServer(t)
	const upn = "bob_x.com#EXT#@contoso.onmicrosoft.com"
	tn.AddUser(User{ID: "g", DisplayName: "Bob", Mail: "bob@x.com", UserPrincipalName: upn, UserType: "Guest"})
	escaped := strings.NewReplacer("#", "%23", "@", "%40").Replace(upn)
	for _, key := range []string{"g", escaped, strings.ToUpper(escaped), strings.ReplaceAll(upn, "#", "%23")} {
		c := do(t, s, "good", "GET", "/users/"+key, "")
		if c.status != 200 || c.body["id"] != "g" {
			t.Errorf("GET /users/%s: %d %v", key, c.status, c.body)
		}
	}
	c := do(t, s, "good", "GET", "/users/g?$select=displayName,externalUserState,externalUserStateChangeDateTime,onPremisesUserPrincipalName,otherMails", "")
	want := map[string]any{"id": "g", "displayName": "Bob", "externalUserState": nil, "externalUserStateChangeDateTime": nil,
		"onPremisesUserPrincipalName": nil, "otherMails": []any{}}
	for k, v := range want {
		got, ok := c.body[k]
		if !ok || fmt.Sprint(got) != fmt.Sprint(v) {
			t.Errorf("$select: %s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if _, ok := c.body["mail"]; ok || len(c.body) != len(want)+1 { // + @odata.context
		t.Errorf("$select returned unselected properties: %v", c.body)
	}
	if c := do(t, s, "good", "GET", "/users/g?$select=nope", ""); c.status != 400 || graphErr(t, c) != "Request_BadRequest" {
		t.Errorf("unknown $select property: %d %v", c.status, c.body)
	}
	if c := do(t, s, "good", "GET", "/users/nobody%40contoso.com", ""); c.status != 404 || graphErr(t, c) != "Request_ResourceNotFound" {
		t.Errorf("unknown UPN: %d %v", c.status, c.body)
	}
	c = do(t, s, "good", "GET", "/users?$select=id,externalUserState&$filter="+strings.ReplaceAll("mail eq 'bob@x.com'", " ", "%20"), "")
	vals, _ := c.body["value"].([]any)
	if len(vals) != 1 || fmt.Sprint(vals[0]) != "map[externalUserState:<nil> id:g]" {
		t.Errorf("list with $select: %v", c.body)
	}
}

func TestDeleteUserAndRemoveMember(t *testing.T) {
	tn, s := newServer(t)
	u := tn.AddUser(User{Mail: "bob@x.com", UserPrincipalName: "bob@x.com"})
	other := tn.AddUser(User{})
	g := tn.AddGroup("G")
	for _, id := range []string{u.ID, other.ID} {
		ref := fmt.Sprintf(`{"@odata.id":"https://graph.microsoft.com/v1.0/directoryObjects/%s"}`, id)
		if c := do(t, s, "good", "POST", "/groups/"+g+"/members/$ref", ref); c.status != 204 {
			t.Fatalf("add: %d %v", c.status, c.body)
		}
	}
	if c := do(t, s, "good", "DELETE", "/groups/"+g+"/members/"+other.ID+"/$ref", ""); c.status != 204 {
		t.Errorf("remove member: %d %v", c.status, c.body)
	}
	for _, path := range []string{"/groups/" + g + "/members/" + other.ID + "/$ref", "/groups/nogroup/members/" + u.ID + "/$ref"} {
		if c := do(t, s, "good", "DELETE", path, ""); c.status != 404 || graphErr(t, c) != "Request_ResourceNotFound" {
			t.Errorf("DELETE %s: %d %v", path, c.status, c.body)
		}
	}
	if c := do(t, s, "good", "DELETE", "/users/"+u.ID, ""); c.status != 204 {
		t.Errorf("delete: %d %v", c.status, c.body)
	}
	if c := do(t, s, "good", "DELETE", "/users/"+u.ID, ""); c.status != 404 || graphErr(t, c) != "Request_ResourceNotFound" {
		t.Errorf("delete twice: %d %v", c.status, c.body)
	}
	if _, ok := tn.User(u.ID); ok || len(tn.Users()) != 1 || len(tn.GroupMembers(g)) != 0 {
		t.Errorf("after delete: users %v, members %v", tn.Users(), tn.GroupMembers(g))
	}
	if c := do(t, s, "good", "GET", "/users/bob%40x.com", ""); c.status != 404 {
		t.Errorf("deleted user still found by UPN: %d", c.status)
	}
	if !tn.DeleteUser(other.ID) || tn.DeleteUser(other.ID) || len(tn.Users()) != 0 {
		t.Error("Tenant.DeleteUser")
	}
}

func TestInviteConvertAndReset(t *testing.T) {
	tn, s := newServer(t)
	ann := tn.AddUser(User{DisplayName: "Ann", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com", UserType: "Member"})
	// Converting an internal user: same ID, PendingAcceptance now; its
	// address may be in a verified domain.
	before := time.Now().Add(-time.Second)
	c := do(t, s, "good", "POST", "/invitations",
		`{"invitedUserEmailAddress":"ann@contoso.com","inviteRedirectUrl":"https://x.example","invitedUser":{"id":"`+ann.ID+`"}}`)
	if c.status != 201 || c.body["invitedUser"].(map[string]any)["id"] != ann.ID {
		t.Fatalf("convert: %d %v", c.status, c.body)
	}
	if u, _ := tn.User(ann.ID); u.ExternalUserState != "PendingAcceptance" || u.ExternalUserStateChangeDateTime.Before(before) || u.UserType != "Member" {
		t.Errorf("converted user = %+v", u)
	}
	if n := len(tn.Users()); n != 1 {
		t.Errorf("%d users after a conversion, want 1", n)
	}
	c = do(t, s, "good", "POST", "/invitations", `{"invitedUserEmailAddress":"x@fabrikam.com","inviteRedirectUrl":"https://x.example","invitedUser":{"id":"nobody"}}`)
	if c.status != 404 || graphErr(t, c) != "Request_ResourceNotFound" {
		t.Errorf("convert unknown id: %d %v", c.status, c.body)
	}

	// Reset redemption of an accepted guest: same ID, PendingAcceptance
	// again, a new change time and a fresh redeem URL.
	first := do(t, s, "good", "POST", "/invitations", invite)
	id := first.body["invitedUser"].(map[string]any)["id"].(string)
	tn.Redeem(id)
	accepted, _ := tn.User(id)
	if accepted.ExternalUserState != "Accepted" {
		t.Fatalf("Redeem: %+v", accepted)
	}
	time.Sleep(2 * time.Millisecond)
	reset := do(t, s, "good", "POST", "/invitations",
		`{"invitedUserEmailAddress":"bob@fabrikam.com","inviteRedirectUrl":"https://x.example","resetRedemption":true,"invitedUser":{"id":"`+id+`"}}`)
	if reset.status != 201 || reset.body["invitedUser"].(map[string]any)["id"] != id || reset.body["resetRedemption"] != true ||
		reset.body["inviteRedeemUrl"] == first.body["inviteRedeemUrl"] {
		t.Errorf("reset: %d %v", reset.status, reset.body)
	}
	if u, _ := tn.User(id); u.ExternalUserState != "PendingAcceptance" || !u.ExternalUserStateChangeDateTime.After(accepted.ExternalUserStateChangeDateTime) {
		t.Errorf("after reset: %+v", u)
	}
	for body, code := range map[string]string{
		`{"invitedUserEmailAddress":"bob@fabrikam.com","inviteRedirectUrl":"https://x.example","resetRedemption":true}`:                                   "BadRequest",
		`{"invitedUserEmailAddress":"eve@fabrikam.com","inviteRedirectUrl":"https://x.example","resetRedemption":true,"invitedUser":{"id":"` + id + `"}}`: "BadRequest",
	} {
		if c := do(t, s, "good", "POST", "/invitations", body); c.status != 400 || graphErr(t, c) != code {
			t.Errorf("%s: %d %v", body, c.status, c.body)
		}
	}
	// Re-inviting the same address: the same user, a fresh link.
	again := do(t, s, "good", "POST", "/invitations", invite)
	if again.body["invitedUser"].(map[string]any)["id"] != id || again.body["inviteRedeemUrl"] == reset.body["inviteRedeemUrl"] {
		t.Errorf("re-invite: %v", again.body)
	}
}

// TestLargeTenant checks that per-user operations do not scan the tenant.
func TestLargeTenant(t *testing.T) {
	tn, s := newServer(t)
	const n = 20000
	ids := make([]string, n)
	for i := range n {
		ids[i] = tn.AddUser(User{Mail: fmt.Sprintf("u%d@x.com", i)}).ID
	}
	start := time.Now()
	for i := range n {
		if _, ok := tn.User(ids[i]); !ok {
			t.Fatal("lost a user")
		}
		tn.SetUserState(ids[i], "Accepted")
	}
	for i := 0; i < n; i += 2 {
		tn.DeleteUser(ids[i])
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("%d lookups and %d deletes took %v", 2*n, n/2, d)
	}
	if got := len(tn.Users()); got != n/2 {
		t.Errorf("%d users left, want %d", got, n/2)
	}
	if c := do(t, s, "good", "GET", "/users/"+ids[n-1], ""); c.status != 200 || c.body["mail"] != fmt.Sprintf("u%d@x.com", n-1) {
		t.Errorf("after compaction: %d %v", c.status, c.body)
	}
	if c := do(t, s, "good", "GET", "/users/"+ids[0], ""); c.status != 404 {
		t.Errorf("deleted user: %d", c.status)
	}
}

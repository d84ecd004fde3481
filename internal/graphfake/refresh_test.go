package graphfake

import (
	"net/url"
	"sync"
	"testing"
)

// Ensure a refresh token is redeemed once even when several requests
// carry it at the same moment (as two replicas refreshing one person
// would): one gets tokens, the others invalid_grant.
func TestRefreshTokenRedeemedOnce(t *testing.T) {
	sts := NewSTS(STSConfig{TenantID: "tid", ClientID: "cid", ClientSecret: "sec"})
	t.Cleanup(sts.Close)
	sts.SignIn(SignedInUser{ObjectID: "oid-ann", Username: "ann@contoso.com", Name: "Ann"})
	status, tok := userGrant(t, sts, url.Values{"grant_type": {"authorization_code"}, "code": {signInCode(t, sts)}, "redirect_uri": {"https://app/cb"}})
	if status != 200 {
		t.Fatalf("code grant: %d %v", status, tok)
	}
	rt := tok["refresh_token"].(string)
	const n = 8
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := sts.Client().PostForm(sts.URL+"/tid/oauth2/v2.0/token", url.Values{"grant_type": {"refresh_token"},
				"refresh_token": {rt}, "client_id": {"cid"}, "client_secret": {"sec"}})
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		if s == 200 {
			ok++
		} else if s != 400 {
			t.Errorf("status %d", s)
		}
	}
	if _, refreshed := sts.Grants(); ok != 1 || refreshed != 1 || sts.RefreshRequests() != n {
		t.Errorf("%d of %d requests got tokens (%d refreshes, %d requests recorded); want 1", ok, n, refreshed, sts.RefreshRequests())
	}
}

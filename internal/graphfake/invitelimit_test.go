package graphfake

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestInvitationLimit(t *testing.T) {
	tn := NewTenant(TenantConfig{})
	tn.SetInvitationLimit(2, time.Hour)
	post := func(email string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/v1.0/invitations",
			strings.NewReader(`{"invitedUserEmailAddress":"`+email+`","inviteRedirectUrl":"https://x.example","sendInvitationMessage":false}`))
		r.Header.Set("Authorization", "Bearer t")
		w := httptest.NewRecorder()
		tn.ServeHTTP(w, r)
		return w
	}
	for _, e := range []string{"a@fabrikam.com", "b@fabrikam.com"} {
		if w := post(e); w.Code != http.StatusCreated {
			t.Fatalf("%s: %d %s", e, w.Code, w.Body)
		}
	}
	w := post("c@fabrikam.com")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "TooManyRequests") {
		t.Fatalf("third within the window: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if tn.InvitationsThrottled() != 1 || len(tn.Invitations()) != 2 {
		t.Errorf("throttled %d, invitations %d", tn.InvitationsThrottled(), len(tn.Invitations()))
	}
	tn.SetInvitationLimit(0, 0)
	if w := post("c@fabrikam.com"); w.Code != http.StatusCreated {
		t.Errorf("with the limit off: %d", w.Code)
	}
}

package flows

import (
	"errors"
	"testing"
)

func TestRedactHidesTheGuestAddress(t *testing.T) {
	err := errors.New("invite: graph 400 BadRequest: The invited user Bob@Fabrikam.com is blocked; bob@fabrikam.com again")
	got := redact(err, "bob@fabrikam.com")
	want := "invite: graph 400 BadRequest: The invited user <guest@fabrikam.com> is blocked; <guest@fabrikam.com> again"
	if got != want {
		t.Errorf("redact =\n%s\nwant\n%s", got, want)
	}
}

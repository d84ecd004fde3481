package flows

import "time"

// Snapshot is everything a Store holds, for moving an installation from
// one backend to another (`invitebot store copy`): the invitations as
// stored (their history included), the guests, the audit log in its
// order, and the sign-in records (SignInStore, still sealed, with the
// expiries of those that have one). Leases are
// not part of it: they belong to the running replicas.
type Snapshot struct {
	Invitations []*Invitation
	Guests      []Guest
	Audit       []Event
	SignIn      map[string][]byte
	// SignInExpires holds the expiry of each sign-in record that has one.
	SignInExpires map[string]time.Time
}

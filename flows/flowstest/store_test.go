package flowstest_test

import (
	"testing"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

func TestStoreConformance(t *testing.T) {
	flowstest.TestStore(t, func(*testing.T) flows.Store { return flowstest.NewStore() })
}

// The pair runs on one in-memory store through two handles; PostgreSQL
// runs it on two connection pools.
func TestStorePairConformance(t *testing.T) {
	flowstest.TestStorePair(t, func(*testing.T) (flows.Store, flows.Store) {
		s := flowstest.NewStore()
		return s, s
	})
}

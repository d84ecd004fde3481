package flowstest_test

import (
	"testing"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

func TestStoreConformance(t *testing.T) {
	flowstest.TestStore(t, func(*testing.T) flows.Store { return flowstest.NewStore() })
}

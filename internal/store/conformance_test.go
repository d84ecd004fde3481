package store_test

import (
	"path/filepath"
	"testing"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/flows/flowstest"
)

func TestConformance(t *testing.T) {
	flowstest.TestStore(t, func(t *testing.T) flows.Store {
		db := mustOpen(t, filepath.Join(t.TempDir(), "invitebot.db"))
		t.Cleanup(func() {
			if err := db.Check(); err != nil {
				t.Error(err)
			}
			if err := db.Close(); err != nil {
				t.Error(err)
			}
		})
		return db
	})
}

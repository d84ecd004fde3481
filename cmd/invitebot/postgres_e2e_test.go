package main

import (
	"strings"
	"testing"

	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
)

// invitebot on PostgreSQL (INVITEBOT_DB a postgres:// URL) behaves as on
// bbolt: the same end-to-end flows, the same records.
func TestE2EOnPostgres(t *testing.T) {
	for name, test := range map[string]func(*testing.T, *harness){
		"NewGuest":            testNewGuest,
		"DuplicateSubmission": testDuplicateSubmission,
	} {
		t.Run(name, func(t *testing.T) {
			h := startOn(t, overHTTP, deps{pollInterval: -1}, pgtest.URL(t))
			test(t, h)
			if logs := h.logs.String(); !strings.Contains(logs, `"db":"postgres://`) {
				t.Errorf("serve did not log the PostgreSQL store it uses: %s", logs)
			}
		})
	}
}

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/slackfake"
)

// leastPrivilege are the Graph application permissions of the README's
// least-privilege set-up: no tenant-wide write permission.
var leastPrivilege = []string{"User.Invite.All", "User.Read.All", "Domain.Read.All", "RoleManagement.Read.Directory", "GroupMember.Read.All"}

// scopedRoles gives the emulated app the least-privilege set-up's roles:
// Groups Administrator over an administrative unit holding the offered
// group, and (unless noWriter) a custom role for attributes and sponsors
// over a dynamic unit of guests that a new guest joins after delay.
func scopedRoles(h *harness, delay time.Duration, noWriter bool) {
	sp := graphfake.DefaultServicePrincipal
	groups := h.tenant.AddAdministrativeUnit("invitebot groups", emuPortal)
	h.tenant.AssignDirectoryRole(sp, graphfake.RoleTemplateGroupsAdministrator, "/administrativeUnits/"+groups)
	guests := h.tenant.AddDynamicGuestUnit("All guests", delay)
	if !noWriter {
		writer := h.tenant.AddRoleDefinition("invitebot guest writer", graphfake.ActionUserBasicUpdate,
			graphfake.ActionUserJobInfoUpdate, graphfake.ActionUserSponsorsUpdate)
		h.tenant.AssignDirectoryRole(sp, writer, "/administrativeUnits/"+guests)
	}
}

// inviteWithAttributes invites Bob with a job title and company, as Ann
// (whose Entra account becomes the sponsor), and waits for the DM; it
// returns the invitation, the DM as read, and Ann's Entra account.
func inviteWithAttributes(t *testing.T, h *harness) (*flows.Invitation, string, graphfake.User) {
	t.Helper()
	h.slack.AddUser(ann, "ann@contoso.com", "Ann Inviter")
	annEntra := h.tenant.AddUser(graphfake.User{DisplayName: "Ann", Mail: "ann@contoso.com", UserPrincipalName: "ann@contoso.com", UserType: "Member"})
	v := inviteValues("bob@fabrikam.com", "Bob", "slack_link", emuPortal)
	v["job_title"] = map[string]any{"job_title": slackfake.Text("Architect")}
	v["company_name"] = map[string]any{"company_name": slackfake.Text("Fabrikam")}
	h.submit(t, h.open(t, ""), v)
	h.waitDM(t, 1)
	return h.invitation(t), render(h.dmsTo(ann)[0].Blocks), annEntra
}

func (h *harness) patches() int {
	n := 0
	for _, r := range h.tenant.Requests() {
		if r.Method == "PATCH" && strings.HasPrefix(r.Path, "/v1.0/users/") {
			n++
		}
	}
	return n
}

// The same invitation with the simple set-up (tenant-wide permissions) and
// the least-privilege one (roles scoped to administrative units): with the
// latter, the guest's attributes and sponsor are refused until it joins
// the dynamic unit of guests, two hours later; invitebot completes the
// invitation, says the writes are pending, keeps retrying from the
// tracking cycle across a restart, and writes them once Entra lets it.
func TestE2ELeastPrivilege(t *testing.T) {
	t.Run("TenantWide", func(t *testing.T) {
		h := startWith(t, overHTTP, deps{pollInterval: -1})
		inv, dm, annEntra := inviteWithAttributes(t, h)
		u, _ := h.tenant.User(inv.ObjectID)
		if inv.State != flows.StateNotified || inv.Deferred != nil || u.JobTitle != "Architect" || strings.Contains(dm, "pending") {
			t.Fatalf("invitation %s, deferred %+v, user %+v\nDM: %s", inv.State, inv.Deferred, u, dm)
		}
		if got := h.tenant.Sponsors(inv.ObjectID); len(got) != 1 || got[0] != annEntra.ID {
			t.Errorf("sponsors = %v", got)
		}
	})
	t.Run("ScopedRoles", func(t *testing.T) {
		c := &clock{}
		h := startWith(t, overHTTP, deps{pollInterval: -1, now: c.now, graphRoles: leastPrivilege})
		scopedRoles(h, 2*time.Hour, false)
		inv, dm, annEntra := inviteWithAttributes(t, h)
		if inv.State != flows.StateNotified || !inv.Deferred.Active() || !inv.Deferred.Attributes || inv.Deferred.SponsorID != annEntra.ID {
			t.Fatalf("invitation %s, deferred %+v (log: %s)", inv.State, inv.Deferred, h.logs.String())
		}
		if got := h.tenant.GroupMembers(emuPortal); len(got) != 1 || got[0] != inv.ObjectID {
			t.Errorf("group members = %v: the group add goes through the unit's role", got)
		}
		// The sponsor is written after the DM (off its critical path), so
		// the DM tells of the attributes; the record has both pending.
		if !strings.Contains(dm, "*Attributes*: pending") || !strings.Contains(dm, "attributes is pending") {
			t.Errorf("DM does not say the writes are pending:\n%s", dm)
		}
		patches := h.patches()
		c.advance(time.Minute + time.Second)
		if st := h.trackCycle(t); st.Deferred != 1 {
			t.Fatalf("cycle: %+v", st)
		}
		if got := h.recordOf(t, inv.ID); got.Deferred.Attempts != 1 || !got.Deferred.Active() || h.patches() != patches+1 {
			t.Fatalf("after a minute: %+v, %d PATCHes", got.Deferred, h.patches()-patches)
		}
		// A restart while pending: the record carries the job.
		if err := h.stopApp(); err != nil {
			t.Fatal(err)
		}
		if err := h.startApp(); err != nil {
			t.Fatal(err)
		}
		c.advance(2 * time.Hour)
		h.trackCycle(t)
		got := h.recordOf(t, inv.ID)
		u, _ := h.tenant.User(inv.ObjectID)
		if got.Deferred.Active() || got.Deferred.DoneAt.IsZero() || u.JobTitle != "Architect" || u.CompanyName != "Fabrikam" || !got.Sponsor.InEntra {
			t.Fatalf("after the guest joined the unit: deferred %+v, user %+v, sponsor %+v", got.Deferred, u, got.Sponsor)
		}
		if s := h.tenant.Sponsors(inv.ObjectID); len(s) != 1 || s[0] != annEntra.ID {
			t.Errorf("sponsors = %v", s)
		}
		if h.patches() != patches+2 {
			t.Errorf("%d PATCHes after the DM, want 2", h.patches()-patches)
		}
		audit := auditActions(t, h, inv.ID)
		if !strings.Contains(audit, "attributes pending") || !strings.Contains(audit, "attributes written") || !strings.Contains(audit, "sponsor set in Entra") {
			t.Errorf("audit log: %s", audit)
		}
		// The outcome DM no longer says pending; no new DM was sent.
		dms := h.dmsTo(ann)
		if len(dms) != 1 {
			t.Errorf("%d DMs, want 1", len(dms))
		}
		if text := render(h.latestVersion(dms[0]).Blocks); strings.Contains(text, "pending") || !strings.Contains(text, "*Attributes*: set") {
			t.Errorf("outcome DM after the writes:\n%s", text)
		}
	})
	t.Run("ScopedRoleMissing", func(t *testing.T) {
		c := &clock{}
		h := startWith(t, overHTTP, deps{pollInterval: -1, now: c.now, graphRoles: leastPrivilege})
		scopedRoles(h, 2*time.Hour, true)
		inv, _, _ := inviteWithAttributes(t, h)
		if !inv.Deferred.Active() {
			t.Fatalf("nothing pending: %+v", inv.Deferred)
		}
		for i := 0; h.recordOf(t, inv.ID).Deferred.Active(); i++ {
			if i > 40 {
				t.Fatalf("still retrying after %d hours", i)
			}
			c.advance(time.Hour)
			h.trackCycle(t)
		}
		got := h.recordOf(t, inv.ID)
		if !strings.Contains(got.Deferred.GaveUp, "403") || !strings.Contains(got.Deferred.GaveUp, "User.ReadWrite.All") {
			t.Errorf("gave up: %q", got.Deferred.GaveUp)
		}
		dms := h.dmsTo(ann)
		if len(dms) != 2 {
			t.Fatalf("%d DMs, want the outcome and the report", len(dms))
		}
		report := render(dms[1].Blocks)
		for _, want := range []string{"could not write the attributes and sponsor of *Bob*", "403", "24 h", "User.ReadWrite.All",
			"microsoft.directory/users/basic/update", "administrative unit"} {
			if !strings.Contains(report, want) {
				t.Errorf("report lacks %q:\n%s", want, report)
			}
		}
		if !strings.Contains(auditActions(t, h, inv.ID), "pending writes abandoned") {
			t.Errorf("audit log: %s", auditActions(t, h, inv.ID))
		}
	})
}

// auditActions returns an invitation's audit log entries, one a line.
func auditActions(t *testing.T, h *harness, id string) string {
	t.Helper()
	evs, err := h.app.db.AuditLog(h.ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ev := range evs {
		if ev.InvitationID == id {
			b.WriteString(ev.Action + ": " + ev.Detail + "\n")
		}
	}
	return b.String()
}

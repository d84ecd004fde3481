package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
	"github.com/invitebot/invitebot/internal/store"
)

// doctorEnv is the environment of the harness's invitebot, with its own
// store file (created, as the first start does) and a policy file offering
// groups.
func doctorEnv(t *testing.T, h *harness, groups ...string) map[string]string {
	t.Helper()
	policy := "groups:\n"
	for i, g := range groups {
		policy += "  - {name: G" + string(rune('A'+i)) + ", id: " + g + "}\n"
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "doctor.db")
	s, err := store.Open(db, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"SLACK_BOT_TOKEN": "xoxb-emulated", "SLACK_SIGNING_SECRET": emuSigning, "SLACK_API_URL": h.slack.APIURL(),
		"AZURE_TENANT_ID": emuTenant, "AZURE_CLIENT_ID": emuClient, "AZURE_CLIENT_SECRET": emuSecret,
		"AZURE_AUTHORITY_HOST": h.sts.URL, "GRAPH_BASE_URL": h.graph.URL,
		"INVITEBOT_DB": db, "INVITEBOT_CONFIG": path,
	}
}

func (h *harness) doctor(t *testing.T, env map[string]string, sts *graphfake.STS) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runDoctor(h.ctx, func(k string) string { return env[k] }, deps{authHTTP: sts.Client()}, &out)
	return out.String(), err
}

func TestDoctor(t *testing.T) {
	h := start(t)
	// Doctor runs as its own process; here, stop the bot so that two Graph
	// clients are not in use in one process (kiota keeps a global).
	if err := h.stopApp(); err != nil {
		t.Fatal(err)
	}
	env := doctorEnv(t, h, emuPortal)
	out, err := h.doctor(t, env, h.sts)
	if err != nil {
		t.Fatalf("doctor on a healthy set-up: %v\n%s", err, out)
	}
	for _, want := range []string{"ok    environment", "ok    slack token", "ok    slack scopes", "ok    entra credential",
		"ok    graph permissions", "ok    verified domains     contoso.com", "ok    policy group",
		"ok    store                " + env["INVITEBOT_DB"] + " opens and checks clean"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, emuSecret) || strings.Contains(out, "xoxb-emulated") {
		t.Errorf("doctor printed a secret:\n%s", out)
	}

	fails := func(name string, env map[string]string, sts *graphfake.STS, check, want string) {
		t.Helper()
		out, err := h.doctor(t, env, sts)
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "FAIL  "+check) && strings.Contains(line, want) && err != nil {
				return
			}
		}
		t.Errorf("%s: err %v, want a FAIL %s line with %q:\n%s", name, err, check, want, out)
	}
	clone := func(m map[string]string, k, v string) map[string]string {
		c := map[string]string{}
		for kk, vv := range m {
			c[kk] = vv
		}
		c[k] = v
		return c
	}
	// Doctor changes nothing: a missing store (a wrong path, a volume not
	// mounted) is a warning with its absolute path, and is not created.
	missing := filepath.Join(t.TempDir(), "missing.db")
	out, err = h.doctor(t, clone(env, "INVITEBOT_DB", missing), h.sts)
	if err != nil || !strings.Contains(out, "warn  store                no store at "+missing+": a new one will be created on first start") {
		t.Errorf("doctor on a missing store: %v\n%s", err, out)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("doctor created the store: %v", err)
	}
	// On PostgreSQL: it connects, reports the schema and the lease, and
	// never prints the URL's password.
	pgURL := strings.Replace(pgtest.URL(t), "postgres@", "postgres:s3cret@", 1)
	out, err = h.doctor(t, clone(env, "INVITEBOT_DB", pgURL), h.sts)
	if err != nil || !strings.Contains(out, fmt.Sprintf("PostgreSQL, schema version %d", pgstore.SchemaVersion())) ||
		!strings.Contains(out, "ok    lease") || strings.Contains(out, "s3cret") {
		t.Errorf("doctor on PostgreSQL: %v\n%s", err, out)
	}
	// On Azure with INVITEBOT_DB_AZURE_AUTH: it signs in with the app's
	// Entra token; a role made for another identity refuses it.
	front, _ := newEntraFront(t, h.sts)
	azure := clone(clone(env, "INVITEBOT_DB", front.URL(pgRole)), "INVITEBOT_DB_AZURE_AUTH", "1")
	out, err = h.doctor(t, azure, h.sts)
	if ok, _ := accepted(front); err != nil || !strings.Contains(out, fmt.Sprintf("PostgreSQL, schema version %d", pgstore.SchemaVersion())) || len(ok) == 0 {
		t.Errorf("doctor on Azure with Entra authentication: %v\n%s", err, out)
	}
	fails("Entra token refused", clone(azure, "INVITEBOT_DB", front.URL("someone")), h.sts, "store", "refused the Microsoft Entra access token")

	held, err := store.Open(env["INVITEBOT_DB"], store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fails("store held", env, h.sts, "store", "held by another process")
	held.Close()
	fails("wrong secret", clone(env, "AZURE_CLIENT_SECRET", "wrong"), h.sts, "entra credential", "the token service answered 401 Unauthorized: AADSTS7000215")
	// The cause is shown, not cut at the first line: a token service that
	// cannot be reached, and one that answers with an error status.
	fails("unreachable", clone(env, "AZURE_AUTHORITY_HOST", "https://127.0.0.1:1"), h.sts, "entra credential", "connection refused")
	refusing := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"invalid_tenant","error_description":"AADSTS90002: Tenant 'x' not found.\r\nTrace ID: 0000"}`)
	}))
	defer refusing.Close()
	var rout bytes.Buffer
	err = runDoctor(h.ctx, func(k string) string { return clone(env, "AZURE_AUTHORITY_HOST", refusing.URL)[k] }, deps{authHTTP: refusing.Client()}, &rout)
	if want := "FAIL  entra credential     client secret: no token: the token service answered 400 Bad Request: AADSTS90002: Tenant 'x' not found.\n"; err == nil || !strings.Contains(rout.String(), want) {
		t.Errorf("token service answering 400: %v, want %q in:\n%s", err, want, rout.String())
	}
	fails("missing group", doctorEnv(t, h, "99999999-2222-3333-4444-555555555555"), h.sts, "policy group", "99999999-2222-3333-4444-555555555555")
	fails("missing env", map[string]string{}, h.sts, "environment", "SLACK_BOT_TOKEN")
	// Groups Graph will not add members to, and one that needs more.
	for want, k := range map[string]graphfake.GroupKind{
		"its membership is dynamic":                {GroupTypes: []string{"DynamicMembership"}, SecurityEnabled: true},
		"synced from on-premises Active Directory": {SecurityEnabled: true, OnPremisesSyncEnabled: true},
		"a mail-enabled security group":            {MailEnabled: true, SecurityEnabled: true},
		"a distribution list":                      {MailEnabled: true},
	} {
		id := h.tenant.AddGroup("Partners") // the name must not give the answer away
		h.tenant.SetGroupKind(id, k)
		fails(want, doctorEnv(t, h, id), h.sts, "policy group", want)
	}
	m365 := h.tenant.AddGroup("Partner team")
	h.tenant.SetGroupKind(m365, graphfake.GroupKind{GroupTypes: []string{"Unified"}, MailEnabled: true})
	roles := h.tenant.AddGroup("Helpdesk admins")
	h.tenant.SetGroupKind(roles, graphfake.GroupKind{SecurityEnabled: true, IsAssignableToRole: true})
	out, err = h.doctor(t, doctorEnv(t, h, m365, roles), h.sts)
	if err != nil || !strings.Contains(out, `ok    policy group         GA (`+m365+`) is "Partner team" in Entra; members can be added`) ||
		!strings.Contains(out, "warn  policy group         GB ("+roles+`) is "Helpdesk admins" in Entra, a role-assignable group: adding members also needs RoleManagement.ReadWrite.Directory`) {
		t.Errorf("a Microsoft 365 group and a role-assignable one: %v\n%s", err, out)
	}

	h.slack.SetScopes("commands", "chat:write")
	fails("missing scopes", env, h.sts, "slack scopes", "missing im:write")
	h.slack.SetScopes()

	weak := graphfake.NewSTS(graphfake.STSConfig{TenantID: emuTenant, ClientID: emuClient, ClientSecret: emuSecret,
		Roles: []string{"User.Invite.All", "User.Read.All"}})
	defer weak.Close()
	fails("missing roles", clone(env, "AZURE_AUTHORITY_HOST", weak.URL), weak, "graph permissions", "missing application permission(s) Domain.Read.All (or Organization.Read.All)")
	out, _ = h.doctor(t, clone(env, "AZURE_AUTHORITY_HOST", weak.URL), weak)
	if !strings.Contains(out, "warn  directory roles      no GroupMember.ReadWrite.All and no tenant-wide role in the token that adds group members; doctor cannot read invitebot's role assignments") {
		t.Errorf("without GroupMember.ReadWrite.All nor RoleManagement.Read.Directory, doctor does not say what it could not verify:\n%s", out)
	}
}

// Ensure doctor recognises the least-privilege set-up (no tenant-wide
// write permission; roles scoped to administrative units, read with
// RoleManagement.Read.Directory; the domains with Domain.Read.All) and
// fails when no role can add group members.
func TestDoctorLeastPrivilege(t *testing.T) {
	for _, tc := range []struct {
		name      string
		roles     []string
		setup     func(*harness)
		wantErr   bool
		want      []string
		forbidden []string
	}{
		{"ScopedRoles", leastPrivilege, func(h *harness) { scopedRoles(h, time.Hour, false) }, false, []string{
			"ok    graph permissions    User.Invite.All, User.Read.All, Domain.Read.All, RoleManagement.Read.Directory, GroupMember.Read.All",
			"ok    directory roles      group adds through Groups Administrator scoped to /administrativeUnits/",
			"doctor cannot see which groups the unit holds",
			"ok    directory roles      attributes and sponsors through invitebot guest writer scoped to /administrativeUnits/",
			"ok    verified domains     contoso.com",
			"ok    policy group",
		}, []string{"FAIL", "no User.ReadWrite.All"}},
		{"TenantWideRole", []string{"User.Invite.All", "User.Read.All", "Organization.Read.All", "GroupMember.Read.All", "User.ReadWrite.All"},
			func(h *harness) {
				h.tenant.AssignDirectoryRole(graphfake.DefaultServicePrincipal, graphfake.RoleTemplateGroupsAdministrator, "/")
			}, false, []string{"ok    directory roles      group adds through Groups Administrator (tenant-wide), not GroupMember.ReadWrite.All"},
			[]string{"FAIL", "warn"}},
		{"NoGroupRole", leastPrivilege, func(h *harness) {}, true, []string{
			"FAIL  directory roles      no GroupMember.ReadWrite.All and no directory role that adds group members",
			"warn  graph permissions    no User.ReadWrite.All and no directory role with microsoft.directory/users/basic/update",
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startWith(t, overHTTP, deps{pollInterval: -1, graphRoles: tc.roles})
			if err := h.stopApp(); err != nil {
				t.Fatal(err)
			}
			tc.setup(h)
			out, err := h.doctor(t, doctorEnv(t, h, emuPortal), h.sts)
			if (err != nil) != tc.wantErr {
				t.Errorf("doctor: %v, want error %v\n%s", err, tc.wantErr, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tc.forbidden {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}

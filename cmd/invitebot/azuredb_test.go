package main

// Azure Database for PostgreSQL with Microsoft Entra authentication
// (INVITEBOT_DB_AZURE_AUTH=1), emulated by pgtest.EntraFront in front of
// the throwaway PostgreSQL server: it requires TLS, asks for a cleartext
// password and accepts only a valid token of the emulated tenant's STS
// for the ossrdbms resource, issued to the role's principal (the app).

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/invitebot/invitebot/flows"
	"github.com/invitebot/invitebot/internal/config"
	"github.com/invitebot/invitebot/internal/graph"
	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/pgstore"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
	"github.com/invitebot/invitebot/internal/store"
)

// pgRole is the role made for the emulated app (pgaadauth_create_principal).
const pgRole = "invitebot"

// newEntraFront puts an emulated Azure front, accepting sts's tokens for
// the app as pgRole, before a new database; it returns the front and the
// database's own URL.
func newEntraFront(t *testing.T, sts *graphfake.STS) (*pgtest.EntraFront, string) {
	t.Helper()
	up := pgtest.URL(t)
	return pgtest.NewEntraFront(t, up, pgtest.EntraConfig{Authority: sts.URL + "/" + emuTenant, HTTPClient: sts.Client(),
		TenantID: emuTenant, Principals: map[string]string{pgRole: emuClient}}), up
}

// accepted and refused split the front's logins.
func accepted(f *pgtest.EntraFront) (ok, refused []pgtest.Login) {
	for _, l := range f.Logins() {
		if l.Refused == "" {
			ok = append(ok, l)
		} else {
			refused = append(refused, l)
		}
	}
	return ok, refused
}

// Every command that opens the store applies INVITEBOT_DB_AZURE_AUTH (they
// all open it through openStore): store copy into and audit export from
// Azure sign in with the app's token; without the switch the server
// refuses them; and a refused token is an error that says so.
func TestStoreCommandsAzureAuth(t *testing.T) {
	ctx := t.Context()
	sts := graphfake.NewSTS(graphfake.STSConfig{TenantID: emuTenant, ClientID: emuClient, ClientSecret: emuSecret})
	t.Cleanup(sts.Close)
	front, up := newEntraFront(t, sts)
	azure := front.URL(pgRole)
	env := map[string]string{"AZURE_TENANT_ID": emuTenant, "AZURE_CLIENT_ID": emuClient, "AZURE_CLIENT_SECRET": emuSecret,
		"AZURE_AUTHORITY_HOST": sts.URL, "INVITEBOT_DB_AZURE_AUTH": "1"}
	getenv := func(k string) string { return env[k] }
	d := deps{authHTTP: sts.Client()}

	bolt := filepath.Join(t.TempDir(), "invitebot.db")
	s, err := store.Open(bolt, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	fillStore(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Without the switch the password is empty: refused, nothing copied.
	var out bytes.Buffer
	err = runStore(ctx, []string{"copy", bolt, azure}, func(k string) string {
		if k == "INVITEBOT_DB_AZURE_AUTH" {
			return ""
		}
		return env[k]
	}, d, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "28P01") || strings.Contains(err.Error(), "Entra") {
		t.Fatalf("store copy without the switch: %v", err)
	}
	if _, refused := accepted(front); len(refused) != 1 || refused[0].Refused != "not a JWT" {
		t.Fatalf("front logins = %+v, want one refused empty password", front.Logins())
	}

	out.Reset()
	if err := runStore(ctx, []string{"copy", bolt, azure}, getenv, d, &out, &out); err != nil {
		t.Fatalf("store copy to Azure: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "copied 6 invitations, 5 guests") {
		t.Errorf("store copy said %q", out.String())
	}
	ok, refused := accepted(front)
	if len(ok) == 0 || len(refused) != 1 {
		t.Fatalf("front logins = %+v, want the copy's connections accepted", front.Logins())
	}
	// The records are in the real database behind the front.
	if snap := export(t, up); len(snap.Invitations) != 6 || len(snap.Audit) == 0 {
		t.Errorf("the database holds %d invitations, %d audit events", len(snap.Invitations), len(snap.Audit))
	}

	out.Reset()
	var csv bytes.Buffer
	env["INVITEBOT_DB"] = azure
	if err := runAudit(ctx, []string{"export", "-since", "87600h"}, getenv, d, &csv, &out); err != nil {
		t.Fatalf("audit export from Azure: %v\n%s", err, out.String())
	}
	if rows := auditRows(t, csv.Bytes()); len(rows) != 10 {
		t.Errorf("%d audit rows, want 10", len(rows))
	}
	if n, _ := accepted(front); len(n) <= len(ok) {
		t.Error("audit export did not connect through the front")
	}

	// A token for another audience (Graph's, from the same credential) is
	// refused; the error names the Entra token as the refused password.
	cfg, err := config.LoadStore(getenv)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := graph.New(entraConfig(cfg, d))
	if err != nil {
		t.Fatal(err)
	}
	graphToken := func(ctx context.Context, _ string) (string, error) { return dir.TokenFor(ctx, graph.Scope) }
	_, err = openStore(ctx, azure, storeOptions{azureAuth: true, entra: func() (tokenFunc, error) { return graphToken, nil }})
	if err == nil || !strings.Contains(err.Error(), "refused the Microsoft Entra access token") || !strings.Contains(err.Error(), "28P01") {
		t.Fatalf("wrong audience: %v", err)
	}
	l := front.Logins()
	if last := l[len(l)-1]; !strings.Contains(last.Refused, `audience "https://graph.microsoft.com"`) {
		t.Errorf("the front refused it for %q, want the audience", last.Refused)
	}
	// The token is nowhere in the error.
	if tok, _ := graphToken(ctx, ""); strings.Contains(err.Error(), tok) {
		t.Error("the error holds the token")
	}
}

// invitebot serve on Azure Database for PostgreSQL with Entra
// authentication: it connects with the app's token, migrates the schema
// and invites; after the first token expired, new connections (the old
// ones dropped, as a failover does) carry new tokens, and invitebot goes
// on working.
func TestE2EAzureEntraPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	const tokenLife = 3 * time.Second
	cr := newCrashRig(t)
	cr.sts.SetResourceTokenLifetime(tokenLife)
	front, up := newEntraFront(t, cr.sts)
	cr.env = append(cr.env, "INVITEBOT_DB_AZURE_AUTH=1")
	r := &replicaRig{crashRig: cr, pg: front.URL(pgRole)}
	a := r.replica(ctx, "serve")

	ok, refused := accepted(front)
	if len(ok) == 0 || len(refused) != 0 {
		t.Fatalf("front logins = %+v, want serve's accepted", front.Logins())
	}
	first := ok[0]
	invite := func(email string) {
		t.Helper()
		sub := r.submission(ann, r.openDialog(ctx, a, email), inviteValues(email, "Bob", "slack_link", emuPortal))
		if st, err := sub.deliver(ctx, a); err != nil || st != http.StatusOK {
			t.Fatalf("submission: %d %v", st, err)
		}
		if err := poll(ctx, func() bool { return r.outcomeDMs()[email] >= 1 }); err != nil {
			t.Fatalf("the invitation of %s did not finish: %v; log tail:\n%s", email, err, tail(a.logs.String(), 3000))
		}
	}
	invite("bob@fabrikam.com")

	// Past the first token's expiry, drop every connection: the pool opens
	// new ones, each with a token asked for then.
	if err := poll(ctx, func() bool { return time.Now().After(first.Expires) }); err != nil {
		t.Fatal(err)
	}
	// At once, as after a failover: the pool still holds the dropped
	// connections, and the store makes each statement that finds one dead
	// on a new connection, so the submission succeeds.
	front.DropConnections()
	invite("carol@fabrikam.com")
	ok, refused = accepted(front)
	if len(refused) != 0 {
		t.Errorf("the front refused %+v", refused)
	}
	var later []pgtest.Login
	for _, l := range ok {
		if !l.At.Before(first.Expires) {
			later = append(later, l)
			if l.TokenID == first.TokenID || !l.Expires.After(first.Expires) {
				t.Errorf("a connection opened at %s carried the first token (or one as old): %+v", l.At, l)
			}
		}
	}
	if len(later) == 0 {
		t.Fatalf("no connection after the first token expired at %s: %+v", first.Expires, ok)
	}
	// The records are in the real database behind the front.
	db, err := pgstore.Open(ctx, up, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var invs []*flows.Invitation
	if err := poll(ctx, func() bool {
		invs, err = db.Invitations(ctx, flows.InvitationFilter{})
		return err == nil && len(invs) == 2 && invs[0].State == flows.StateNotified && invs[1].State == flows.StateNotified
	}); err != nil {
		for _, inv := range invs {
			t.Logf("%s %s", inv.Request.Email, inv.State)
		}
		t.Fatalf("the invitations did not both reach notified: %v", err)
	}
	r.stop(ctx, a)
	if strings.Contains(a.logs.String(), "eyJ0eXAi") {
		t.Error("serve's log holds a token")
	}
}

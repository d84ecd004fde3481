package pgtest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/invitebot/invitebot/internal/graphfake"
	"github.com/invitebot/invitebot/internal/pgstore/pgtest"
)

const (
	entraTenant = "9188040d-6c67-4c5b-b112-36a304b66dad"
	entraClient = "22222222-2222-2222-2222-222222222222"
	entraSecret = "secret"
)

// appToken asks sts for a client-credentials token for scope.
func appToken(t *testing.T, sts *graphfake.STS, tenant, scope string) string {
	t.Helper()
	resp, err := sts.Client().PostForm(sts.URL+"/"+tenant+"/oauth2/v2.0/token", url.Values{"client_id": {entraClient},
		"client_secret": {entraSecret}, "grant_type": {"client_credentials"}, "scope": {scope}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		t.Fatalf("token for %s: %d %v", scope, resp.StatusCode, err)
	}
	return body.AccessToken
}

// connectWith connects to u with password.
func connectWith(ctx context.Context, u, password string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return nil, err
	}
	cfg.Password = password
	return pgx.ConnectConfig(ctx, cfg)
}

// The front lets in a connection whose password is a valid token for
// Azure Database for PostgreSQL issued to the role's principal, and
// refuses every other with PostgreSQL's "password authentication failed"
// (28P01), recording the cause.
func TestEntraFront(t *testing.T) {
	ctx := t.Context()
	sts := graphfake.NewSTS(graphfake.STSConfig{TenantID: entraTenant, ClientID: entraClient, ClientSecret: entraSecret})
	defer sts.Close()
	other := graphfake.NewSTS(graphfake.STSConfig{TenantID: "other-tenant", ClientID: entraClient, ClientSecret: entraSecret})
	defer other.Close()
	var skew atomic.Int64 // the front's clock ahead of the real one
	front := pgtest.NewEntraFront(t, pgtest.URL(t), pgtest.EntraConfig{
		Authority: sts.URL + "/" + entraTenant, HTTPClient: sts.Client(), TenantID: entraTenant,
		Principals: map[string]string{"invitebot": entraClient, "someone-else": "44444444-0000-0000-0000-000000000000"},
		Now:        func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
	})
	good := appToken(t, sts, entraTenant, graphfake.ResourceOSSRDBMS+"/.default")

	conn, err := connectWith(ctx, front.URL("invitebot"), good)
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "invitebot" {
		t.Fatalf("current_user = %q, %v", user, err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatalf("the role cannot create tables: %v", err)
	}
	conn.Close(ctx)
	if l := front.Logins(); len(l) != 1 || l[0].Refused != "" || l[0].Role != "invitebot" || l[0].TokenID == "" || !l[0].Expires.After(l[0].Issued) {
		t.Fatalf("logins = %+v", l)
	}

	// A cancel request reaches the upstream backend through the front.
	conn, err = connectWith(ctx, front.URL("invitebot"), good)
	if err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = conn.Exec(qctx, "SELECT pg_sleep(30)")
	cancel()
	if err == nil {
		t.Error("pg_sleep(30) was not cancelled")
	}
	conn.Close(ctx)

	// Azure requires TLS: without it, no password is even asked for.
	n := len(front.Logins())
	plain := strings.Replace(front.URL("invitebot"), "sslmode=verify-full", "sslmode=disable", 1)
	var pe *pgconn.PgError
	if _, err := connectWith(ctx, plain, good); !errors.As(err, &pe) || pe.Code != "28000" || !strings.Contains(pe.Message, "no encryption") {
		t.Errorf("without TLS: %v", err)
	}
	if len(front.Logins()) != n {
		t.Error("a password was taken without TLS")
	}

	tampered := func() string {
		p := strings.Split(good, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(p[1])
		var c map[string]any
		_ = json.Unmarshal(raw, &c)
		c["appid"] = "44444444-0000-0000-0000-000000000000"
		b, _ := json.Marshal(c)
		return p[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + p[2]
	}()
	for _, c := range []struct {
		name, role, token, cause string
		ahead                    time.Duration
	}{
		{"GraphAudience", "invitebot", appToken(t, sts, entraTenant, "https://graph.microsoft.com/.default"), `audience "https://graph.microsoft.com"`, 0},
		{"Expired", "invitebot", good, "expired at", 2 * time.Hour},
		{"OtherTenant", "invitebot", appToken(t, other, "other-tenant", graphfake.ResourceOSSRDBMS+"/.default"), `issuer "` + other.Issuer() + `"`, 0},
		{"Tampered", "invitebot", tampered, "signature: invalid", 0},
		{"OtherPrincipal", "someone-else", good, `role "someone-else" belongs to principal`, 0},
		{"NoRole", "nobody", good, `role "nobody" is not an Entra principal`, 0},
		{"NotAToken", "invitebot", "hunter2", "not a JWT", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			skew.Store(int64(c.ahead))
			defer skew.Store(0)
			n := len(front.Logins())
			_, err := connectWith(ctx, front.URL(c.role), c.token)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "28P01" || pe.Message != `password authentication failed for user "`+c.role+`"` {
				t.Fatalf("err = %v, want 28P01", err)
			}
			l := front.Logins()
			if len(l) != n+1 || !strings.Contains(l[n].Refused, c.cause) {
				t.Fatalf("logins = %+v, want the cause %q", l[n:], c.cause)
			}
		})
	}
}

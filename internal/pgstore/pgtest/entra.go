package pgtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// EntraAudience is the audience Azure Database for PostgreSQL requires of
// a Microsoft Entra access token used as a password (the token is asked
// for with the scope EntraAudience + "/.default").
const EntraAudience = "https://ossrdbms-aad.database.windows.net"

// EntraConfig configures an EntraFront.
type EntraConfig struct {
	// Authority is the tenant's token authority (AZURE_AUTHORITY_HOST
	// followed by the tenant ID). The front reads the issuer and the
	// signing keys (jwks_uri) from its OpenID configuration,
	// Authority/v2.0/.well-known/openid-configuration.
	Authority string
	// HTTPClient fetches them (one that trusts the token service's
	// certificate); nil: http.DefaultClient.
	HTTPClient *http.Client
	// TenantID is the tenant whose tokens the server accepts (tid).
	TenantID string
	// Principals maps each role that signs in with a token to the Entra
	// principal it was created for (Azure's pgaadauth_create_principal):
	// an application's client ID (the token's appid), an object ID (oid)
	// or a user's UPN (upn). The front creates the roles on the upstream
	// server, with the right to create tables in its database.
	Principals map[string]string
	// Now is the front's clock; nil: time.Now.
	Now func() time.Time
}

// Login is one authentication the front decided.
type Login struct {
	Role string
	At   time.Time
	// Refused is why the token was refused ("" if accepted): the cause
	// Azure writes to the server's log, never to the client.
	Refused string
	// The accepted token's jti, iat and exp.
	TokenID         string
	Issued, Expires time.Time
}

// EntraFront emulates Azure Database for PostgreSQL's Microsoft Entra
// authentication in front of a real PostgreSQL database: it speaks the
// PostgreSQL wire protocol on a loopback TCP port, requires TLS (with its
// own certificate, CertFile), asks for a cleartext password, validates
// the password as an Entra access token (RS256 signature with the
// issuer's published keys, issuer, tenant, audience EntraAudience,
// not-before and expiry), maps it to the role by its principal, and
// refuses anything else with the error PostgreSQL sends for a wrong
// password (FATAL, 28P01). An accepted connection is spliced to the
// upstream database, opened as the role (the upstream server must trust
// it, as pgtest's own server does): from then on the front relays bytes
// both ways.
type EntraFront struct {
	t        testing.TB
	cfg      EntraConfig
	upstream *pgconn.Config
	database string
	ln       net.Listener
	tls      *tls.Config
	certFile string

	mu      sync.Mutex
	conns   map[net.Conn]bool
	logins  []Login
	issuer  string
	keys    map[string]*rsa.PublicKey
	closed  bool
	running sync.WaitGroup
}

// NewEntraFront starts a front for the database at upstream (a URL from
// URL) and stops it when t ends.
func NewEntraFront(t testing.TB, upstream string, cfg EntraConfig) *EntraFront {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	up, err := pgconn.ParseConfig(upstream)
	if err != nil {
		t.Fatalf("pgtest: upstream: %v", err)
	}
	f := &EntraFront{t: t, cfg: cfg, upstream: up, database: up.Database, conns: map[net.Conn]bool{}}
	if err := f.createRoles(upstream); err != nil {
		t.Fatalf("pgtest: create the roles: %v", err)
	}
	dir := t.TempDir()
	f.certFile = filepath.Join(dir, "front.pem")
	if f.tls, err = serverTLS(f.certFile); err != nil {
		t.Fatalf("pgtest: front certificate: %v", err)
	}
	if f.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	f.running.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

// URL is the postgres:// URL of the front for role: TLS, the server's
// certificate verified against CertFile, no password (the client gives
// a token).
func (f *EntraFront) URL(role string) string {
	return (&url.URL{Scheme: "postgres", User: url.User(role), Host: f.ln.Addr().String(), Path: "/" + f.database,
		RawQuery: url.Values{"sslmode": {"verify-full"}, "sslrootcert": {f.certFile}}.Encode()}).String()
}

// CertFile is the PEM file of the front's TLS certificate (127.0.0.1).
func (f *EntraFront) CertFile() string { return f.certFile }

// Logins returns the authentications so far, in order.
func (f *EntraFront) Logins() []Login {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Login(nil), f.logins...)
}

// DropConnections closes every open client connection, as a server
// restart or failover does; new ones are accepted as before.
func (f *EntraFront) DropConnections() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		_ = c.Close()
	}
}

func (f *EntraFront) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	_ = f.ln.Close()
	f.DropConnections()
	f.running.Wait()
}

// createRoles creates the Principals' roles on the upstream server, each
// allowed to connect to the database and create tables in it.
func (f *EntraFront) createRoles(upstream string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, upstream)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for role := range f.cfg.Principals {
		r := pgx.Identifier{role}.Sanitize()
		for _, sql := range []string{
			// Roles are the cluster's: another test may have made it.
			`DO $$ BEGIN CREATE ROLE ` + r + ` LOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`,
			`GRANT ALL ON DATABASE ` + pgx.Identifier{f.database}.Sanitize() + ` TO ` + r,
			`GRANT ALL ON SCHEMA public TO ` + r,
		} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				return fmt.Errorf("%s: %w", sql, err)
			}
		}
	}
	return nil
}

func (f *EntraFront) accept() {
	defer f.running.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			_ = c.Close()
			return
		}
		f.conns[c] = true
		f.running.Add(1)
		f.mu.Unlock()
		go func() {
			defer f.running.Done()
			f.serve(c)
			f.mu.Lock()
			delete(f.conns, c)
			f.mu.Unlock()
			_ = c.Close()
		}()
	}
}

// fatal sends an ErrorResponse as PostgreSQL does before it closes a
// connection.
func fatal(be *pgproto3.Backend, code, msg string) {
	be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	_ = be.Flush()
}

func (f *EntraFront) serve(raw net.Conn) {
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second)) // the start-up; lifted once spliced
	var conn net.Conn = raw
	be := pgproto3.NewBackend(conn, conn)
	encrypted := false
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if encrypted {
				return
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return
			}
			tc := tls.Server(raw, f.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			conn, encrypted = tc, true
			be = pgproto3.NewBackend(conn, conn)
		case *pgproto3.GSSEncRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return
			}
		case *pgproto3.CancelRequest:
			f.cancel(m)
			return
		case *pgproto3.StartupMessage:
			f.startup(conn, raw, be, m, encrypted)
			return
		default:
			return
		}
	}
}

// startup authenticates the client and splices it to the upstream server.
func (f *EntraFront) startup(conn, raw net.Conn, be *pgproto3.Backend, m *pgproto3.StartupMessage, encrypted bool) {
	role, db := m.Parameters["user"], m.Parameters["database"]
	if db == "" {
		db = role
	}
	if !encrypted {
		// Azure requires TLS (require_secure_transport is on by default).
		fatal(be, "28000", fmt.Sprintf(`no pg_hba.conf entry for host "%s", user "%s", database "%s", no encryption`,
			hostOf(raw.RemoteAddr()), role, db))
		return
	}
	be.Send(&pgproto3.AuthenticationCleartextPassword{})
	if be.Flush() != nil || be.SetAuthType(pgproto3.AuthTypeCleartextPassword) != nil {
		return
	}
	msg, err := be.Receive()
	if err != nil {
		return
	}
	pw, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		fatal(be, "08P01", "expected password response")
		return
	}
	login := Login{Role: role, At: f.cfg.Now()}
	claims, err := f.validate(pw.Password, role, login.At)
	if err != nil {
		login.Refused = err.Error()
		f.record(login)
		fatal(be, "28P01", fmt.Sprintf(`password authentication failed for user "%s"`, role))
		return
	}
	login.TokenID = claims.Jti
	login.Issued, login.Expires = time.Unix(claims.Iat, 0), time.Unix(claims.Exp, 0)
	if db != f.database {
		f.record(login)
		fatal(be, "3D000", fmt.Sprintf(`database "%s" does not exist`, db))
		return
	}
	up, err := f.dialUpstream(role, m.Parameters)
	if err != nil {
		login.Refused = "upstream: " + err.Error()
		f.record(login)
		fatal(be, "08006", "could not reach the database")
		return
	}
	f.record(login)
	defer up.Conn.Close()
	be.Send(&pgproto3.AuthenticationOk{})
	for k, v := range up.ParameterStatuses {
		be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: up.PID, SecretKey: up.SecretKey})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: up.TxStatus})
	if be.Flush() != nil {
		return
	}
	_ = raw.SetDeadline(time.Time{})
	splice(conn, up.Conn)
}

func (f *EntraFront) record(l Login) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logins = append(f.logins, l)
}

func hostOf(a net.Addr) string {
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// dialUpstream opens a connection to the upstream database as role and
// takes it over.
func (f *EntraFront) dialUpstream(role string, params map[string]string) (*pgconn.HijackedConn, error) {
	cfg := f.upstream.Copy()
	cfg.User = role
	cfg.RuntimeParams = map[string]string{}
	for k, v := range params {
		if k != "user" && k != "database" {
			cfg.RuntimeParams[k] = v
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pc.SyncConn(ctx); err != nil {
		_ = pc.Close(ctx)
		return nil, err
	}
	return pc.Hijack()
}

// cancel passes a cancel request on to the upstream server (the client
// got the upstream backend's key).
func (f *EntraFront) cancel(m *pgproto3.CancelRequest) {
	network, addr := pgconn.NetworkAddress(f.upstream.Host, f.upstream.Port)
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	b, err := m.Encode(nil)
	if err != nil {
		return
	}
	_, _ = c.Write(b)
	_, _ = io.Copy(io.Discard, c) // the server closes it
}

// splice relays bytes both ways until either side closes.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	relay := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go relay(a, b)
	go relay(b, a)
	<-done
	<-done
}

// entraClaims are the claims the front checks.
type entraClaims struct {
	Aud   string `json:"aud"`
	Iss   string `json:"iss"`
	Tid   string `json:"tid"`
	Appid string `json:"appid"`
	Oid   string `json:"oid"`
	Upn   string `json:"upn"`
	Jti   string `json:"jti"`
	Iat   int64  `json:"iat"`
	Nbf   int64  `json:"nbf"`
	Exp   int64  `json:"exp"`
}

// validate checks token as Azure Database for PostgreSQL does before it
// lets role in; the error is the cause.
func (f *EntraFront) validate(token, role string, now time.Time) (*entraClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	var hdr struct{ Alg, Kid string }
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil || json.Unmarshal(hb, &hdr) != nil {
		return nil, errors.New("not a JWT")
	}
	if hdr.Alg != "RS256" {
		return nil, fmt.Errorf("signature: algorithm %q, not RS256", hdr.Alg)
	}
	key, issuer, err := f.key(hdr.Kid)
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig) != nil {
		return nil, errors.New("signature: invalid")
	}
	var c entraClaims
	if err := json.Unmarshal(cb, &c); err != nil {
		return nil, errors.New("claims: not JSON")
	}
	switch {
	case c.Iss != issuer:
		return nil, fmt.Errorf("issuer %q, not %q", c.Iss, issuer)
	case c.Tid != f.cfg.TenantID:
		return nil, fmt.Errorf("tenant %q, not %q", c.Tid, f.cfg.TenantID)
	case c.Aud != EntraAudience:
		return nil, fmt.Errorf("audience %q, not %q", c.Aud, EntraAudience)
	case c.Nbf != 0 && now.Before(time.Unix(c.Nbf, 0)):
		return nil, fmt.Errorf("not valid before %s", time.Unix(c.Nbf, 0).UTC().Format(time.RFC3339))
	case !now.Before(time.Unix(c.Exp, 0)):
		return nil, fmt.Errorf("expired at %s", time.Unix(c.Exp, 0).UTC().Format(time.RFC3339))
	}
	p, ok := f.cfg.Principals[role]
	if !ok {
		return nil, fmt.Errorf("role %q is not an Entra principal", role)
	}
	if p == "" || (p != c.Appid && p != c.Oid && !strings.EqualFold(p, c.Upn)) {
		return nil, fmt.Errorf("role %q belongs to principal %s, the token to appid %s, oid %s", role, p, c.Appid, c.Oid)
	}
	return &c, nil
}

// key returns the issuer's signing key kid and the issuer, reading the
// OpenID configuration and its keys again for a kid not seen before.
func (f *EntraFront) key(kid string) (*rsa.PublicKey, string, error) {
	f.mu.Lock()
	k, issuer := f.keys[kid], f.issuer
	f.mu.Unlock()
	if k != nil {
		return k, issuer, nil
	}
	issuer, keys, err := f.fetchKeys()
	if err != nil {
		return nil, "", err
	}
	f.mu.Lock()
	f.issuer, f.keys = issuer, keys
	f.mu.Unlock()
	if k = keys[kid]; k == nil {
		return nil, "", fmt.Errorf("unknown key %q", kid)
	}
	return k, issuer, nil
}

func (f *EntraFront) fetchKeys() (string, map[string]*rsa.PublicKey, error) {
	var oidc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := f.getJSON(strings.TrimSuffix(f.cfg.Authority, "/")+"/v2.0/.well-known/openid-configuration", &oidc); err != nil {
		return "", nil, err
	}
	var jwks struct {
		Keys []struct{ Kty, Kid, N, E string } `json:"keys"`
	}
	if err := f.getJSON(oidc.JWKSURI, &jwks); err != nil {
		return "", nil, err
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range jwks.Keys {
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if k.Kty != "RSA" || err1 != nil || err2 != nil {
			continue
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	return oidc.Issuer, keys, nil
}

func (f *EntraFront) getJSON(u string, v any) error {
	resp, err := f.cfg.HTTPClient.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// serverTLS makes a self-signed certificate for 127.0.0.1 and localhost,
// writes it to certFile and returns the server's TLS configuration.
func serverTLS(certFile string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "pgtest Entra front"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, nil
}

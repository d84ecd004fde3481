package graphfake

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// stsToken asks the STS for a client-credentials token for scope.
func stsToken(t *testing.T, s *STS, scope string) (int, map[string]any) {
	t.Helper()
	resp, err := s.Client().PostForm(s.URL+"/tid/oauth2/v2.0/token", url.Values{"client_id": {"cid"}, "client_secret": {"sec"},
		"grant_type": {"client_credentials"}, "scope": {scope}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func getJSON(t *testing.T, s *STS, u string, v any) {
	t.Helper()
	resp, err := s.Client().Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// A token for Azure Database for PostgreSQL is signed with the key the
// OpenID configuration's jwks_uri publishes, carries the resource as its
// audience and the configured lifetime, and is not a token Graph accepts.
func TestSTSResourceToken(t *testing.T) {
	s := NewSTS(STSConfig{TenantID: "tid", ClientID: "cid", ClientSecret: "sec"})
	defer s.Close()
	s.SetResourceTokenLifetime(2 * time.Minute)
	status, body := stsToken(t, s, ResourceOSSRDBMS+"/.default openid offline_access profile") // as MSAL asks
	tok, _ := body["access_token"].(string)
	if status != http.StatusOK || tok == "" || body["expires_in"] != float64(120) {
		t.Fatalf("token: %d %v", status, body)
	}
	if s.ValidToken(tok) {
		t.Error("Graph would accept a token for another resource")
	}
	var oidc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, s, s.URL+"/tid/v2.0/.well-known/openid-configuration", &oidc)
	var jwks struct {
		Keys []struct{ Kid, N, E string } `json:"keys"`
	}
	getJSON(t, s, oidc.JWKSURI, &jwks)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(jwks.Keys) != 1 {
		t.Fatalf("token has %d parts, JWKS %d keys", len(parts), len(jwks.Keys))
	}
	dec := func(p string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var hdr, claims map[string]any
	if err := json.Unmarshal(dec(parts[0]), &hdr); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(dec(parts[1]), &claims); err != nil {
		t.Fatal(err)
	}
	k := jwks.Keys[0]
	if hdr["alg"] != "RS256" || hdr["kid"] != k.Kid {
		t.Errorf("header %v, key %s", hdr, k.Kid)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(dec(k.N)), E: int(new(big.Int).SetBytes(dec(k.E)).Int64())}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], dec(parts[2])); err != nil {
		t.Errorf("signature: %v", err)
	}
	exp, iat := claims["exp"].(float64), claims["iat"].(float64)
	if claims["aud"] != ResourceOSSRDBMS || claims["iss"] != oidc.Issuer || oidc.Issuer != s.Issuer() || claims["appid"] != "cid" ||
		claims["tid"] != "tid" || exp-iat != 120 {
		t.Errorf("claims %v (issuer %s)", claims, oidc.Issuer)
	}

	// Graph's tokens are as before; an unknown resource is Entra's AADSTS500011.
	if status, body := stsToken(t, s, "https://graph.microsoft.com/.default"); status != http.StatusOK || !s.ValidToken(body["access_token"].(string)) {
		t.Errorf("graph token: %d %v", status, body)
	}
	if status, body := stsToken(t, s, "https://vault.azure.net/.default"); status != http.StatusBadRequest || body["error"] != "invalid_resource" ||
		!strings.Contains(body["error_description"].(string), "AADSTS500011") {
		t.Errorf("unknown resource: %d %v", status, body)
	}
}

package graphfake

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// ResourceOSSRDBMS is Azure Database for PostgreSQL's (and MySQL's)
// resource: its tokens are asked for with the scope
// ResourceOSSRDBMS + "/.default" and carry it as their audience.
const ResourceOSSRDBMS = "https://ossrdbms-aad.database.windows.net"

// resources are the resources other than Graph the tenant knows. The
// STS signs client-credentials tokens (RS256, with the key its jwks_uri
// publishes), as Entra does, so that a resource server emulator can
// validate them as the real one does: signature, issuer, audience,
// expiry.
var resources = []string{ResourceOSSRDBMS}

// signingKey is the token-signing key of every STS in the process (Entra
// signs every tenant's tokens with the same keys), made on first use.
var signingKey = sync.OnceValues(func() (*rsa.PrivateKey, string) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(k.N.Bytes())
	return k, base64.RawURLEncoding.EncodeToString(sum[:12])
})

// SetResourceTokenLifetime sets how long the tokens for resources other
// than Graph last (zero: 1h). MSAL asks again for a token that expires
// within 5 minutes, so with a shorter lifetime every GetToken is a new
// token.
func (s *STS) SetResourceTokenLifetime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resourceLife = d
}

// Issuer is the iss claim of the STS's tokens, as its OpenID
// configuration names it.
func (s *STS) Issuer() string { return s.URL + "/" + s.cfg.TenantID + "/v2.0" }

// resourceOf returns the resource of a client-credentials scope
// ("RESOURCE/.default"), and whether the STS issues tokens for it.
func resourceOf(scope string) (string, bool) {
	// MSAL adds the OpenID Connect scopes to the resource's.
	f := slices.DeleteFunc(strings.Fields(scope), func(s string) bool { return s == "openid" || s == "profile" || s == "offline_access" })
	if len(f) != 1 || !strings.HasSuffix(f[0], "/.default") {
		return "", false
	}
	r := strings.TrimSuffix(f[0], "/.default")
	for _, known := range resources {
		if r == known {
			return r, true
		}
	}
	return r, false
}

// resourceToken answers a client-credentials grant for resource: an app
// token with aud resource, signed. It is not one Graph accepts.
func (s *STS) resourceToken(w http.ResponseWriter, resource string) {
	s.mu.Lock()
	life := s.resourceLife
	s.mu.Unlock()
	if life <= 0 {
		life = time.Hour
	}
	now := time.Now()
	tok := sign(map[string]any{"aud": resource, "iss": s.Issuer(), "tid": s.cfg.TenantID, "appid": s.cfg.ClientID,
		"azp": s.cfg.ClientID, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(life).Unix(), "jti": newGUID(),
		"oid": s.cfg.ObjectID, "sub": s.cfg.ObjectID, "idtyp": "app", "ver": "2.0"})
	secs := max(int(life.Seconds()), 1)
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": tok})
}

// sign encodes claims as a JWT signed with RS256.
func sign(claims map[string]any) string {
	key, kid := signingKey()
	enc := base64.RawURLEncoding.EncodeToString
	b, _ := json.Marshal(claims)
	// typ first, as Entra writes it: its tokens start with eyJ0eXAi.
	input := enc([]byte(`{"typ":"JWT","alg":"RS256","kid":"`+kid+`"}`)) + "." + enc(b)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return input + "." + enc(sig)
}

// keys serves the jwks_uri: the public signing key.
func keys(w http.ResponseWriter) {
	key, kid := signingKey()
	enc := base64.RawURLEncoding.EncodeToString
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "use": "sig", "kid": kid, "alg": "RS256",
		"n": enc(key.N.Bytes()), "e": enc(big.NewInt(int64(key.E)).Bytes()),
	}}})
}

package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

const hsSecret = "a-long-enough-test-secret-for-hs256"

var (
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
	ecKey1 = sync.OnceValue(func() *ecdsa.PrivateKey { return newEC(elliptic.P256()) })
	ecKey2 = sync.OnceValue(func() *ecdsa.PrivateKey { return newEC(elliptic.P256()) })
)

func newEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func pemPublic(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func sign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func userClaims(sub string) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": sub, "collectionName": "users", "email": "u@example.com", "level": 3,
		"exp": time.Now().Add(time.Hour).Unix(),
	}
}

func TestJWTHS256(t *testing.T) {
	a := newAuth(t, Config{JWT: &JWTConfig{Secret: hsSecret}})
	tok := sign(t, jwt.SigningMethodHS256, []byte(hsSecret), userClaims("u1"), nil)
	au, err := a.Authenticate(withToken(tok))
	if err != nil || au == nil {
		t.Fatalf("Authenticate = %v, %v", au, err)
	}
	if au.ID != "u1" || au.Collection != "users" || au.Record["email"] != "u@example.com" {
		t.Fatalf("auth = %+v", au)
	}
	// Rules read the id as @request.auth.id, also when the token only has `sub`.
	if au.Record["id"] != "u1" {
		t.Fatalf("record id = %#v, want the sub claim", au.Record["id"])
	}
	if n, ok := au.Record["level"].(json.Number); !ok || n.String() != "3" {
		t.Fatalf("level = %#v, want json.Number", au.Record["level"])
	}
	// Bearer prefix optional and case-insensitive.
	for _, h := range []string{"Bearer " + tok, "bearer " + tok, "BEARER  " + tok} {
		mustAuth(t, a, withToken(h), "u1")
	}
	// PocketBase-shaped claims: id and collectionId win over sub and collectionName.
	pb := sign(t, jwt.SigningMethodHS512, []byte(hsSecret), jwt.MapClaims{
		"id": "pbid", "sub": "other", "collectionId": "pbc_1", "collectionName": "users", "type": "auth",
		"exp": time.Now().Add(time.Hour).Unix(),
	}, nil)
	au, err = a.Authenticate(withToken(pb))
	if err != nil || au == nil || au.ID != "pbid" || au.Collection != "pbc_1" {
		t.Fatalf("PocketBase claims: %+v, %v", au, err)
	}
}

func TestJWTRefusals(t *testing.T) {
	a := newAuth(t, Config{JWT: &JWTConfig{Secret: hsSecret, Issuer: "https://issuer", Audience: "realtime"}})
	good := func() jwt.MapClaims {
		c := userClaims("u1")
		c["iss"], c["aud"] = "https://issuer", "realtime"
		return c
	}
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodHS256, []byte(hsSecret), good(), nil)), "u1")

	expired := good()
	expired["exp"] = time.Now().Add(-time.Minute).Unix()
	notYet := good()
	notYet["nbf"] = time.Now().Add(time.Hour).Unix()
	wrongIss := good()
	wrongIss["iss"] = "https://evil"
	wrongAud := good()
	wrongAud["aud"] = "someone-else"
	noID := good()
	delete(noID, "sub")
	numericSub := good()
	numericSub["sub"] = 12

	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"expired":      sign(t, jwt.SigningMethodHS256, []byte(hsSecret), expired, nil),
		"not before":   sign(t, jwt.SigningMethodHS256, []byte(hsSecret), notYet, nil),
		"wrong secret": sign(t, jwt.SigningMethodHS256, []byte("another-secret-entirely"), good(), nil),
		"alg none":     none,
		"wrong iss":    sign(t, jwt.SigningMethodHS256, []byte(hsSecret), wrongIss, nil),
		"wrong aud":    sign(t, jwt.SigningMethodHS256, []byte(hsSecret), wrongAud, nil),
		"no id":        sign(t, jwt.SigningMethodHS256, []byte(hsSecret), noID, nil),
		"numeric sub":  sign(t, jwt.SigningMethodHS256, []byte(hsSecret), numericSub, nil),
		"RS256 token":  sign(t, jwt.SigningMethodRS256, rsaKey(), good(), nil),
		"garbage":      "not.a.jwt",
		"tampered":     tamper(sign(t, jwt.SigningMethodHS256, []byte(hsSecret), good(), nil)),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) { mustAuth(t, a, withToken(tok), "") })
	}
	if s := a.Stats(); s.Refused != uint64(len(cases)) || s.Errors != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

// tamper swaps the payload for one claiming another user, keeping the signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	forged, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "admin", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("x"))
	if err != nil {
		panic(err)
	}
	parts[1] = strings.Split(forged, ".")[1]
	return strings.Join(parts, ".")
}

func TestJWTExpiryBoundsCacheTTL(t *testing.T) {
	a := newAuth(t, Config{JWT: &JWTConfig{Secret: hsSecret}, CacheTTL: time.Hour})
	exp := time.Now().Add(time.Second).Truncate(time.Second).Add(time.Second) // 1..2s ahead, on a second
	c := userClaims("u1")
	c["exp"] = exp.Unix()
	tok := sign(t, jwt.SigningMethodHS256, []byte(hsSecret), c, nil)
	mustAuth(t, a, withToken(tok), "u1")
	mustAuth(t, a, withToken(tok), "u1")
	if s := a.Stats(); s.Hits != 1 {
		t.Fatalf("stats = %+v, want a hit", s)
	}
	time.Sleep(time.Until(exp) + 100*time.Millisecond)
	mustAuth(t, a, withToken(tok), "") // the cached record must not outlive exp
}

func TestJWTPublicKeyRS256(t *testing.T) {
	pub := pemPublic(t, &rsaKey().PublicKey)
	a := newAuth(t, Config{JWT: &JWTConfig{PublicKey: pub}})
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodRS256, rsaKey(), userClaims("r1"), nil)), "r1")
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodPS256, rsaKey(), userClaims("p1"), nil)), "p1")

	// Alg confusion: an HS256 token whose HMAC secret is the public key's PEM
	// (what a naive verifier would use as "the key") is refused.
	forged := sign(t, jwt.SigningMethodHS256, []byte(pub), userClaims("admin"), nil)
	mustAuth(t, a, withToken(forged), "")
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey().PublicKey)
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodHS256, der, userClaims("admin"), nil)), "")

	// Signed by another RSA key: refused.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodRS256, other, userClaims("r1"), nil)), "")

	// Algorithms narrows what is accepted.
	rsOnly := newAuth(t, Config{JWT: &JWTConfig{PublicKey: pub, Algorithms: []string{"RS256"}}})
	mustAuth(t, rsOnly, withToken(sign(t, jwt.SigningMethodRS256, rsaKey(), userClaims("r1"), nil)), "r1")
	mustAuth(t, rsOnly, withToken(sign(t, jwt.SigningMethodPS256, rsaKey(), userClaims("p1"), nil)), "")
}

func TestJWTPublicKeyECAndEd25519(t *testing.T) {
	ec := newAuth(t, Config{JWT: &JWTConfig{PublicKey: pemPublic(t, &ecKey1().PublicKey)}})
	mustAuth(t, ec, withToken(sign(t, jwt.SigningMethodES256, ecKey1(), userClaims("e1"), nil)), "e1")
	mustAuth(t, ec, withToken(sign(t, jwt.SigningMethodES256, ecKey2(), userClaims("e1"), nil)), "")

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed := newAuth(t, Config{JWT: &JWTConfig{PublicKey: pemPublic(t, pub)}})
	mustAuth(t, ed, withToken(sign(t, jwt.SigningMethodEdDSA, priv, userClaims("d1"), nil)), "d1")
}

// jwksServer serves a mutable JWKS and counts fetches.
type jwksServer struct {
	*endpoint
	mu   sync.Mutex
	keys []jose.JSONWebKey
	down bool
}

func newJWKSServer(t testing.TB, keys ...jose.JSONWebKey) *jwksServer {
	s := &jwksServer{keys: keys}
	s.endpoint = newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.down {
			w.WriteHeader(500)
			return
		}
		writeJSON(w, 200, jose.JSONWebKeySet{Keys: s.keys})
	})
	return s
}

func (s *jwksServer) set(keys ...jose.JSONWebKey) {
	s.mu.Lock()
	s.keys = keys
	s.mu.Unlock()
}

func jwk(pub any, kid, alg string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"}
}

func TestJWKSES256(t *testing.T) {
	srv := newJWKSServer(t,
		jose.JSONWebKey{Key: []byte("symmetric keys are never taken from a JWKS"), KeyID: "k1", Algorithm: "HS256"},
		jwk(&ecKey1().PublicKey, "k1", "ES256"),
		jwk(&rsaKey().PublicKey, "r1", "RS256"))
	a := newAuth(t, Config{JWT: &JWTConfig{JWKSURL: srv.URL + "/.well-known/jwks.json"}})
	if srv.count() != 0 {
		t.Fatal("JWKS fetched before first use")
	}
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodES256, ecKey1(), userClaims("e1"), map[string]any{"kid": "k1"})), "e1")
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodRS256, rsaKey(), userClaims("r1"), map[string]any{"kid": "r1"})), "r1")
	// No kid: any key that fits is tried.
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodES256, ecKey1(), userClaims("e2"), nil)), "e2")
	// A kid whose key is of another type, or whose declared alg differs: refused.
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodES256, ecKey1(), userClaims("x"), map[string]any{"kid": "r1"})), "")
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodPS256, rsaKey(), userClaims("x"), map[string]any{"kid": "r1"})), "")
	// HS256 signed with the symmetric value published under k1: refused.
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodHS256, []byte("symmetric keys are never taken from a JWKS"), userClaims("x"), map[string]any{"kid": "k1"})), "")
	// Signed by a key the JWKS does not hold, under a known kid: refused.
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodES256, ecKey2(), userClaims("x"), map[string]any{"kid": "k1"})), "")
	if n := srv.count(); n != 1 {
		t.Fatalf("%d JWKS fetches, want 1", n)
	}
}

func TestJWKSUnknownKidRefetchesOnce(t *testing.T) {
	srv := newJWKSServer(t, jwk(&ecKey1().PublicKey, "k1", "ES256"))
	a := newAuth(t, Config{JWT: &JWTConfig{JWKSURL: srv.URL}})
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodES256, ecKey1(), userClaims("e1"), map[string]any{"kid": "k1"})), "e1")

	// The issuer rotates in k2: a token signed with it makes one refetch.
	srv.set(jwk(&ecKey1().PublicKey, "k1", "ES256"), jwk(&ecKey2().PublicKey, "k2", "ES256"))
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodES256, ecKey2(), userClaims("e2"), map[string]any{"kid": "k2"})), "e2")
	if n := srv.count(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2", n)
	}
	// More unknown kids right after: rate-limited, refused without fetching.
	for _, kid := range []string{"k3", "k4", "k5"} {
		mustAuth(t, a, withToken(sign(t, jwt.SigningMethodES256, ecKey2(), userClaims("e3"), map[string]any{"kid": kid})), "")
	}
	if n := srv.count(); n != 2 {
		t.Fatalf("%d JWKS fetches after unknown kids, want 2 (rate-limited)", n)
	}
	// Once the interval has passed, an unknown kid may refetch again.
	a.jwt.jwks.minInterval = 0
	srv.set(jwk(&ecKey2().PublicKey, "k9", "ES256"))
	mustAuth(t, a, withToken(sign(t, jwt.SigningMethodES256, ecKey2(), userClaims("e9"), map[string]any{"kid": "k9"})), "e9")
	if n := srv.count(); n != 3 {
		t.Fatalf("%d JWKS fetches, want 3", n)
	}
}

func TestJWKSDownIsAnError(t *testing.T) {
	srv := newJWKSServer(t, jwk(&ecKey1().PublicKey, "k1", "ES256"))
	url := srv.URL
	srv.Close()
	a := newAuth(t, Config{JWT: &JWTConfig{JWKSURL: url}})
	tok := sign(t, jwt.SigningMethodES256, ecKey1(), userClaims("e1"), map[string]any{"kid": "k1"})
	mustUnavailable(t, a, withToken(tok), tok, "jwks_url GET "+url)
	if s := a.Stats(); s.Errors != 1 || s.Refused != 0 {
		t.Fatalf("stats = %+v", s)
	}

	// A JWKS answering 500 is an error too; once it recovers, tokens verify.
	srv2 := newJWKSServer(t, jwk(&ecKey1().PublicKey, "k1", "ES256"))
	srv2.down = true
	b := newAuth(t, Config{JWT: &JWTConfig{JWKSURL: srv2.URL}})
	b.jwt.jwks.retry = 0
	mustUnavailable(t, b, withToken(tok), tok, "answered 500")
	srv2.mu.Lock()
	srv2.down = false
	srv2.mu.Unlock()
	mustAuth(t, b, withToken(tok), "e1")

	// Once keys are known, an unknown kid while the JWKS is down is an error (it may be a new key).
	b.jwt.jwks.minInterval = 0
	srv2.mu.Lock()
	srv2.down = true
	srv2.mu.Unlock()
	other := sign(t, jwt.SigningMethodES256, ecKey2(), userClaims("e2"), map[string]any{"kid": "k2"})
	mustUnavailable(t, b, withToken(other), other, "answered 500")
	// ... while tokens of known keys keep verifying.
	mustAuth(t, b, withToken(sign(t, jwt.SigningMethodES256, ecKey1(), userClaims("e3"), map[string]any{"kid": "k1"})), "e3")
}

func TestJWKSSharedFetch(t *testing.T) {
	srv := newJWKSServer(t, jwk(&ecKey1().PublicKey, "k1", "ES256"))
	a := newAuth(t, Config{JWT: &JWTConfig{JWKSURL: srv.URL}})
	var toks []string
	for i := range 20 {
		toks = append(toks, sign(t, jwt.SigningMethodES256, ecKey1(), userClaims("e"+string(rune('a'+i))), map[string]any{"kid": "k1"}))
	}
	var wg sync.WaitGroup
	for _, tok := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if au, err := a.Authenticate(withToken(tok)); err != nil || au == nil {
				t.Errorf("Authenticate = %v, %v", au, err)
			}
		}()
	}
	wg.Wait()
	if n := srv.count(); n != 1 {
		t.Fatalf("%d JWKS fetches for concurrent first use, want 1", n)
	}
}

func TestJWTForget(t *testing.T) {
	a := newAuth(t, Config{JWT: &JWTConfig{Secret: hsSecret}})
	tok := sign(t, jwt.SigningMethodHS256, []byte(hsSecret), userClaims("u1"), nil)
	mustAuth(t, a, withToken(tok), "u1")
	mustAuth(t, a, withToken(tok), "u1")
	a.Forget("users/u1")
	mustAuth(t, a, withToken(tok), "u1")
	if s := a.Stats(); s.Misses != 2 || s.Hits != 1 {
		t.Fatalf("stats = %+v, want 2 misses (Forget dropped the entry) and 1 hit", s)
	}
}

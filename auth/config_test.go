package auth

import (
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	rsaPEM := pemPublic(t, &rsaKey().PublicKey)
	ecPEM := pemPublic(t, &ecKey1().PublicKey)
	privDER, err := x509.MarshalPKCS8PrivateKey(ecKey1())
	if err != nil {
		t.Fatal(err)
	}
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	p384PEM := pemPublic(t, &newEC(elliptic.P384()).PublicKey)

	bad := []struct {
		name string
		c    Config
		want string
	}{
		{"both", Config{URL: "http://x/me", JWT: &JWTConfig{Secret: "s"}}, "auth: url and jwt are mutually exclusive"},
		{"neither", Config{}, "auth: needs url"},
		{"jwt without key", Config{JWT: &JWTConfig{Issuer: "x"}}, "auth: jwt needs one of secret, public_key, jwks_url"},
		{"jwt two keys", Config{JWT: &JWTConfig{Secret: "s", PublicKey: rsaPEM}}, "only one of secret, public_key, jwks_url"},
		{"relative url", Config{URL: "/api/me"}, "must be an absolute http:// or https:// URL"},
		{"ftp url", Config{URL: "ftp://host/me"}, "must be an absolute http"},
		{"unparsable url", Config{URL: "http://[::1"}, "auth: url is not a valid URL"},
		{"jwks url", Config{JWT: &JWTConfig{JWKSURL: "jwks.json"}}, "jwks_url"},
		{"not pem", Config{JWT: &JWTConfig{PublicKey: "hello"}}, "public_key is not PEM"},
		{"private pem", Config{JWT: &JWTConfig{PublicKey: privPEM}}, "PRIVATE KEY; give the public key"},
		{"bad der", Config{JWT: &JWTConfig{PublicKey: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}}, "auth: jwt public_key:"},
		{"alg none", Config{JWT: &JWTConfig{Secret: "s", Algorithms: []string{"HS256", "none"}}}, `"none" is never accepted`},
		{"alg unknown", Config{JWT: &JWTConfig{Secret: "s", Algorithms: []string{"XS256"}}}, `algorithm "XS256" is unknown`},
		{"hs with public key", Config{JWT: &JWTConfig{PublicKey: rsaPEM, Algorithms: []string{"RS256", "HS256"}}}, "HS256 does not fit an RSA public key"},
		{"rs with secret", Config{JWT: &JWTConfig{Secret: "s", Algorithms: []string{"RS256"}}}, "RS256 does not fit a secret"},
		{"hs with jwks", Config{JWT: &JWTConfig{JWKSURL: "https://x/jwks", Algorithms: []string{"HS256"}}}, "HS256 does not fit a JWKS"},
		{"es384 with p256", Config{JWT: &JWTConfig{PublicKey: ecPEM, Algorithms: []string{"ES384"}}}, "ES384 does not fit an EC P-256 public key"},
		{"es256 with p384", Config{JWT: &JWTConfig{PublicKey: p384PEM, Algorithms: []string{"ES256"}}}, "does not fit an EC P-384"},
		{"cookie with jwt", Config{JWT: &JWTConfig{Secret: "s"}, Headers: []string{"Cookie"}}, "Cookie header works only with url"},
		{"negative timeout", Config{URL: "http://x", Timeout: -time.Second}, "timeout must not be negative"},
		{"negative cache size", Config{URL: "http://x", CacheSize: -1}, "cache_size must not be negative"},
		{"negative queue timeout", Config{URL: "http://x", QueueTimeout: -time.Second}, "queue timeout must not be negative"},
		{"bad header", Config{URL: "http://x", Headers: []string{"X Token"}}, `"X Token" is not a valid header name`},
		{"host header", Config{URL: "http://x", Headers: []string{"host"}}, "header Host cannot carry credentials"},
		{"bad method", Config{URL: "http://x", Method: "GE T"}, "not a usable HTTP method"},
		{"bad record path", Config{URL: "http://x", RecordPath: "data..user"}, "record_path"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if err == nil {
				t.Fatal("Validate = nil, want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %q, want it to contain %q", err, tc.want)
			}
			if _, nerr := New(tc.c); nerr == nil || nerr.Error() != err.Error() {
				t.Fatalf("New error %v differs from Validate's %v", nerr, err)
			}
		})
	}

	good := []Config{
		{URL: "http://127.0.0.1:8090/api/collections/users/auth-refresh", Method: "post", RecordPath: "record"},
		{URL: "https://example.com/me", Headers: []string{"cookie", "X-Api-Key", "Cookie"}},
		{JWT: &JWTConfig{Secret: "s"}},
		{JWT: &JWTConfig{PublicKey: rsaPEM, Issuer: "i", Audience: "a"}},
		{JWT: &JWTConfig{PublicKey: ecPEM, Algorithms: []string{"ES256"}}},
		{JWT: &JWTConfig{JWKSURL: "https://issuer/.well-known/jwks.json", Algorithms: []string{"ES256", "RS256"}}},
	}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", c, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := Config{URL: "http://x/me", Method: "post", Headers: []string{"cookie", "Cookie", "x-token"}}
	n, err := c.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if n.Method != "POST" || n.Timeout != DefaultTimeout || n.CacheTTL != DefaultCacheTTL ||
		n.NegativeTTL != DefaultNegativeTTL || n.CacheSize != DefaultCacheSize {
		t.Fatalf("defaults not applied: %+v", n.Config)
	}
	if strings.Join(n.headers, ",") != "Cookie,X-Token" {
		t.Fatalf("headers = %v", n.headers)
	}
	if c.Method != "post" || c.Timeout != 0 {
		t.Fatal("Validate/normalize changed the caller's Config")
	}
	d, _ := (&Config{URL: "http://x"}).normalize()
	if d.Method != "GET" || strings.Join(d.headers, ",") != "Authorization" {
		t.Fatalf("default method/headers = %s %v", d.Method, d.headers)
	}
	j, _ := (&Config{JWT: &JWTConfig{PublicKey: pemPublic(t, &ecKey1().PublicKey)}}).normalize()
	if strings.Join(j.jwt.methods, ",") != "ES256" {
		t.Fatalf("EC P-256 default algorithms = %v", j.jwt.methods)
	}
}

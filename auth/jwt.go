package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/caddy-realtime/realtime/broker"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"
)

// JWKS refresh limits.
const (
	jwksMinInterval = 30 * time.Second // between refetches (unknown kid, stale set)
	jwksRetry       = time.Second      // between attempts while no set was ever fetched
	jwksMaxAge      = time.Hour        // a set older than this is refetched on use
)

type jwtVerifier struct {
	parser  *jwt.Parser
	methods []string
	secret  []byte
	pub     crypto.PublicKey
	jwks    *jwksCache
}

func newJWTVerifier(s *jwtSetup, client *http.Client, timeout time.Duration) *jwtVerifier {
	opts := []jwt.ParserOption{jwt.WithValidMethods(s.methods), jwt.WithJSONNumber()}
	if s.issuer != "" {
		opts = append(opts, jwt.WithIssuer(s.issuer))
	}
	if s.aud != "" {
		opts = append(opts, jwt.WithAudience(s.aud))
	}
	v := &jwtVerifier{parser: jwt.NewParser(opts...), methods: s.methods, secret: s.secret, pub: s.pub}
	if s.jwksURL != "" {
		v.jwks = &jwksCache{
			url: s.jwksURL, client: client, timeout: timeout,
			minInterval: jwksMinInterval, retry: jwksRetry, maxAge: jwksMaxAge,
		}
	}
	return v
}

// verify checks the token and turns its claims into an auth record. A token
// that does not verify is a refusal; a JWKS that cannot be fetched is an error.
// The returned TTL keeps a cached record from outliving the token's exp.
func (v *jwtVerifier) verify(ctx context.Context, c *credentials) (*broker.Auth, time.Duration, error) {
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(c.token, claims, func(t *jwt.Token) (any, error) {
		return v.key(ctx, t)
	})
	if err != nil {
		var le *lookupError
		if errors.As(err, &le) {
			return nil, 0, le
		}
		return nil, 0, nil
	}

	rec := map[string]any(claims)
	id, _ := rec["id"].(string)
	if id == "" {
		if _, has := rec["id"]; has && rec["id"] != nil {
			return nil, 0, nil // an id claim that is not a string: not a PocketBase-shaped identity
		}
		// `sub` is the id: rules read it as @request.auth.id.
		id, _ = rec["sub"].(string)
		rec["id"] = id
	}
	if id == "" {
		return nil, 0, nil
	}
	var ttl time.Duration
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		if ttl = time.Until(exp.Time); ttl <= 0 {
			return nil, 0, nil
		}
	}
	return &broker.Auth{ID: id, Collection: collectionOf(rec), Record: rec}, ttl, nil
}

var errKeyMismatch = errors.New("algorithm does not fit the key")

// key picks the verification key for t. The parser already checked t's alg
// against the allowed list; this checks it against the key once more, so an
// HS* token is never verified with a public key (alg confusion).
func (v *jwtVerifier) key(ctx context.Context, t *jwt.Token) (any, error) {
	switch {
	case v.secret != nil:
		if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok {
			return nil, errKeyMismatch
		}
		return v.secret, nil
	case v.pub != nil:
		if !methodFitsKey(t.Method, v.pub) {
			return nil, errKeyMismatch
		}
		return v.pub, nil
	}
	kid, _ := t.Header["kid"].(string)
	keys, err := v.jwks.keys(ctx, kid, t.Method)
	if err != nil {
		return nil, err
	}
	switch len(keys) {
	case 0:
		return nil, errors.New("no key in the JWKS fits the token")
	case 1:
		return keys[0], nil
	}
	set := jwt.VerificationKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k)
	}
	return set, nil
}

// jwksCache holds the fetched key set and refreshes it within rate limits.
type jwksCache struct {
	url         string
	client      *http.Client
	timeout     time.Duration
	minInterval time.Duration
	retry       time.Duration
	maxAge      time.Duration

	sf singleflight.Group

	mu        sync.Mutex
	set       *jose.JSONWebKeySet // nil until a fetch succeeded
	fetched   time.Time           // last successful fetch
	attempted time.Time           // last attempt while there was no set
	refetched time.Time           // last attempt while there was a set
	lastErr   error               // outcome of the last attempt
}

// keys returns the keys that may verify a token with this kid and method,
// refetching the set once (rate-limited) when the kid is unknown.
func (c *jwksCache) keys(ctx context.Context, kid string, m jwt.SigningMethod) ([]crypto.PublicKey, error) {
	set, err := c.current(ctx)
	if err != nil {
		return nil, err
	}
	ks := selectKeys(set, kid, m)
	if len(ks) > 0 || kid == "" || hasKid(set, kid) {
		return ks, nil
	}
	set, err = c.refresh(ctx)
	if err != nil {
		return nil, err
	}
	return selectKeys(set, kid, m), nil
}

// current returns the set, fetching it when there is none or it is stale; a
// stale set stays in use while its refresh fails.
func (c *jwksCache) current(ctx context.Context) (*jose.JSONWebKeySet, error) {
	c.mu.Lock()
	set, fetched := c.set, c.fetched
	c.mu.Unlock()
	if set != nil && time.Since(fetched) < c.maxAge {
		return set, nil
	}
	fresh, err := c.refresh(ctx)
	if err != nil {
		if set != nil {
			return set, nil
		}
		return nil, err
	}
	return fresh, nil
}

// refresh fetches the set again, within limits: while no set was ever
// fetched, at most one attempt per retry; once there is one, at most one
// refetch (unknown kid, stale set) per minInterval. When limited it returns the
// current set and the last attempt's error. Concurrent callers share one fetch.
func (c *jwksCache) refresh(ctx context.Context) (*jose.JSONWebKeySet, error) {
	v, err, _ := c.sf.Do("", func() (any, error) {
		c.mu.Lock()
		last, wait := &c.refetched, c.minInterval
		if c.set == nil {
			last, wait = &c.attempted, c.retry
		}
		if !last.IsZero() && time.Since(*last) < wait {
			set, err := c.set, c.lastErr
			c.mu.Unlock()
			return set, err
		}
		*last = time.Now()
		c.mu.Unlock()

		set, err := c.fetch(ctx)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.lastErr = err
		if err != nil {
			return c.set, err
		}
		c.set, c.fetched = set, time.Now()
		return set, nil
	})
	set, _ := v.(*jose.JSONWebKeySet)
	return set, err
}

// fetch gets and parses the JWKS. Keys go-jose cannot read, symmetric keys
// and keys not meant for signatures are skipped.
func (c *jwksCache) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	where := "jwks_url GET " + c.url
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, unavailable("%s: %v", where, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, requestError(ctx, where, err, c.timeout)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		drain(resp.Body)
		return nil, unavailable("%s answered %s", where, statusText(resp.StatusCode))
	}
	body, err := readLimited(resp.Body)
	if err != nil {
		return nil, bodyError(ctx, where, err, c.timeout)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, unavailable("%s answered with a body that is not a JWKS: %v", where, err)
	}
	set := &jose.JSONWebKeySet{}
	for _, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.IsPublic() {
			pub := k.Public() // a private key published by mistake: use its public half
			if !pub.Valid() {
				continue // symmetric: never accepted from a JWKS
			}
			k = pub
		}
		set.Keys = append(set.Keys, k)
	}
	if len(set.Keys) == 0 {
		return nil, unavailable("%s has no usable signing keys (RSA, EC or Ed25519 public keys)", where)
	}
	return set, nil
}

func hasKid(set *jose.JSONWebKeySet, kid string) bool {
	return len(set.Key(kid)) > 0
}

// selectKeys returns the set's keys that may verify a token signed with m:
// those with the token's kid (all keys when it has none), whose declared alg
// (if any) is m's and whose type fits m.
func selectKeys(set *jose.JSONWebKeySet, kid string, m jwt.SigningMethod) []crypto.PublicKey {
	cand := set.Keys
	if kid != "" {
		cand = set.Key(kid)
	}
	var out []crypto.PublicKey
	for _, k := range cand {
		if k.Algorithm != "" && k.Algorithm != m.Alg() {
			continue
		}
		var pub crypto.PublicKey
		switch key := k.Key.(type) {
		case *rsa.PublicKey:
			pub = key
		case *ecdsa.PublicKey:
			pub = key
		case ed25519.PublicKey:
			pub = key
		default:
			continue
		}
		if methodFitsKey(m, pub) {
			out = append(out, pub)
		}
	}
	return out
}

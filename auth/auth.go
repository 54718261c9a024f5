// Package auth turns the credentials on a realtime subscription POST into an
// auth record, as PocketBase does with its Authorization header: by asking the
// site's own endpoint or by verifying a JWT locally.
//
// Invalid credentials make a guest (PocketBase's behaviour); a lookup that
// cannot be made (endpoint down, timeout, 5xx, unusable answer, JWKS
// unreachable) is an error, so the caller can answer 503 instead of silently
// downgrading the client. Results are cached in ristretto keyed by a SHA-256
// hash of the credentials (never the credentials themselves); refusals are
// cached for a shorter time and errors not at all; concurrent lookups of one
// credential share one request.
//
// New endpoint lookups are bounded (Config.MaxConcurrent, a short queue, a
// share per client IP) so a flood of made-up tokens cannot pile requests and
// connections onto the endpoint: beyond the bound a lookup is refused with a
// *LimitError (503 with Retry-After), while cached tokens and lookups already
// in flight are answered as usual.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-realtime/realtime/broker"
	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"
)

// ErrUnavailable is wrapped by every error Authenticate returns because a
// lookup could not be made: the caller answers 503, never a silent guest.
var ErrUnavailable = errors.New("auth lookup unavailable")

// lookupError is a lookup that could not be made. Its message never holds
// credentials.
type lookupError struct{ msg string }

func (e *lookupError) Error() string        { return "auth: " + e.msg }
func (e *lookupError) Is(target error) bool { return target == ErrUnavailable }

func unavailable(format string, args ...any) error {
	return &lookupError{msg: fmt.Sprintf(format, args...)}
}

// Stats counts Authenticate calls that carried credentials, by outcome.
// Every such call is a Hit, a Miss, Shared or Limited (or was canceled while
// waiting); every Miss ends as a record, a refusal (Refused) or an error (Errors).
type Stats struct {
	Hits    uint64 // answered from the cache (records and cached refusals)
	Misses  uint64 // lookups made (endpoint requests or JWT verifications)
	Shared  uint64 // calls that waited for a lookup another call was making
	Refused uint64 // lookups that ended as guest: 401/403, bad/expired/forged JWT
	Errors  uint64 // lookups that could not be made
	Limited uint64 // calls refused by the concurrency limit (a *LimitError)
}

// Authenticator resolves credentials to auth records. It is safe for
// concurrent use. Close it when done: the cache runs goroutines.
type Authenticator struct {
	cfg    *normalized
	lookup func(ctx context.Context, c *credentials) (*broker.Auth, time.Duration, error)

	client    *http.Client    // URL lookups
	transport *http.Transport // ours, closed by Close; nil with Config.HTTPClient
	jwt       *jwtVerifier    // JWT lookups
	cache     *ristretto.Cache[string, *entry]
	flights   singleflight.Group
	limit     *limiter // new URL lookups; nil = unlimited (JWT, MaxConcurrent < 0)
	refusals  refusalLog

	// mu orders cache writes against Forget and Close: stores hold it shared,
	// Forget and Close exclusively, so a lookup that raced a Forget is not cached.
	mu     sync.RWMutex
	closed bool
	gen    atomic.Uint64 // bumped by every Forget

	// revMu guards byIdentity: identity -> the live positive cache entries for
	// it, kept in step with the cache by its OnExit callback.
	revMu      sync.Mutex
	byIdentity map[string]map[*entry]struct{}

	hits, misses, shared, refused, errs, limited atomic.Uint64

	testHookWaiting func() // tests: called once a caller waits for a lookup
}

// entry is one cached lookup; auth nil is a cached refusal.
type entry struct {
	key  string
	auth *broker.Auth
}

// credentials are the configured headers as the POST carried them.
type credentials struct {
	header http.Header // configured headers only, values as received
	token  string      // first non-empty value, "Bearer " stripped (JWT)
	key    string      // SHA-256 of names and values: the cache key
}

// New validates c and returns a ready Authenticator.
func New(c Config) (*Authenticator, error) {
	n, err := c.normalize()
	if err != nil {
		return nil, err
	}
	a := &Authenticator{cfg: n, byIdentity: make(map[string]map[*entry]struct{}), refusals: refusalLog{log: n.Logger}}

	a.client = n.HTTPClient
	jwksClient := n.HTTPClient
	if a.client == nil {
		a.transport = http.DefaultTransport.(*http.Transport).Clone()
		if n.MaxConcurrent > 0 {
			// At most one connection per lookup slot, kept idle for reuse:
			// the open files a flood can cost us are bounded.
			a.transport.MaxConnsPerHost = n.MaxConcurrent
			a.transport.MaxIdleConnsPerHost = n.MaxConcurrent
			a.transport.MaxIdleConns = n.MaxConcurrent
		}
		a.client = &http.Client{
			Transport: a.transport,
			// A redirect (to a login page, typically) is not an answer about
			// these credentials; the endpoint should answer 401 for a guest.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		jwksClient = &http.Client{Transport: a.transport}
	}
	if n.jwt != nil {
		a.jwt = newJWTVerifier(n.jwt, jwksClient, n.Timeout)
		a.lookup = a.jwt.verify
	} else {
		a.lookup = a.lookupURL
		a.limit = newLimiter(n)
	}

	size := int64(n.CacheSize)
	a.cache, err = ristretto.NewCache(&ristretto.Config[string, *entry]{
		NumCounters:        10 * size,
		MaxCost:            size,
		BufferItems:        64,
		IgnoreInternalCost: true, // cost is 1 per entry: MaxCost counts entries
		KeyToHash:          keyToHash,
		OnExit:             a.onExit,
	})
	if err != nil {
		a.closeTransport()
		return nil, fmt.Errorf("auth: cache: %w", err)
	}
	return a, nil
}

// keyToHash reads ristretto's two hashes straight from the SHA-256 key.
func keyToHash(k string) (uint64, uint64) {
	if len(k) < 16 {
		return 0, 0
	}
	return binary.LittleEndian.Uint64([]byte(k[:8])), binary.LittleEndian.Uint64([]byte(k[8:16]))
}

// Authenticate returns the auth record for r's credentials: nil (guest) when r
// carries none or they are refused (401/403 from the endpoint; a bad, expired
// or forged JWT), an error wrapping ErrUnavailable when the lookup could not be
// made (the caller answers 503). A new endpoint lookup beyond the concurrency
// limit is not made: the error is a *LimitError (wrapping ErrLimited and
// ErrUnavailable). An error also comes back when r's context ends while
// waiting. The returned record is shared with the cache: treat it as read-only.
func (a *Authenticator) Authenticate(r *http.Request) (*broker.Auth, error) {
	c := a.credentials(r)
	if c == nil {
		return nil, nil
	}
	if e, ok := a.get(c.key); ok {
		a.hits.Add(1)
		return e.auth, nil
	}

	gen := a.gen.Load()
	// The lookup may be shared by other callers: it must not end with r.
	ctx := context.WithoutCancel(r.Context())
	var ip string
	if a.limit != nil {
		ip = a.clientIP(r)
	}
	led := false
	ch := a.flights.DoChan(flightKey(c.key, gen), func() (any, error) {
		led = true
		if a.limit != nil {
			// Only a new lookup takes a slot, charged to the caller who
			// started it; callers joining it do not.
			release, refused := a.limit.acquire(ip)
			if refused != nil {
				a.refusals.note(ip, refused)
				return nil, refused
			}
			defer release()
		}
		return a.resolve(ctx, c, gen)
	})
	if a.testHookWaiting != nil {
		a.testHookWaiting()
	}
	select {
	case res := <-ch:
		var le *LimitError
		switch {
		case res.Err != nil && errors.As(res.Err, &le):
			a.limited.Add(1)
		case !led:
			a.shared.Add(1)
		}
		if res.Err != nil {
			return nil, res.Err
		}
		au, _ := res.Val.(*broker.Auth)
		return au, nil
	case <-r.Context().Done():
		return nil, fmt.Errorf("auth: gave up waiting for the lookup: %w", r.Context().Err())
	}
}

// resolve makes one lookup and caches its outcome.
func (a *Authenticator) resolve(ctx context.Context, c *credentials, gen uint64) (*broker.Auth, error) {
	a.misses.Add(1)
	au, ttl, err := a.lookup(ctx, c)
	if err != nil {
		a.errs.Add(1)
		return nil, err
	}
	switch {
	case au == nil:
		a.refused.Add(1)
		ttl = a.cfg.NegativeTTL
	case ttl == 0 || ttl > a.cfg.CacheTTL:
		ttl = a.cfg.CacheTTL
	}
	a.store(c.key, au, ttl, gen)
	return au, nil
}

// flightKey separates lookups started before and after a Forget.
func flightKey(key string, gen uint64) string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], gen)
	return key + string(b[:])
}

func (a *Authenticator) get(key string) (*entry, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return nil, false
	}
	e, ok := a.cache.Get(key)
	return e, ok && e != nil
}

// store caches the outcome of a lookup unless a Forget happened meanwhile.
// It waits for ristretto to apply the write, so the next call hits.
func (a *Authenticator) store(key string, au *broker.Auth, ttl time.Duration, gen uint64) {
	if ttl <= 0 {
		return
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed || a.gen.Load() != gen {
		return
	}
	e := &entry{key: key, auth: au}
	if au != nil {
		a.revAdd(e)
	}
	if !a.cache.SetWithTTL(key, e, 1, ttl) {
		if au != nil {
			a.revRemove(e)
		}
		return
	}
	a.cache.Wait()
}

func (a *Authenticator) revAdd(e *entry) {
	id := e.auth.Identity()
	a.revMu.Lock()
	set := a.byIdentity[id]
	if set == nil {
		set = make(map[*entry]struct{}, 1)
		a.byIdentity[id] = set
	}
	set[e] = struct{}{}
	a.revMu.Unlock()
}

func (a *Authenticator) revRemove(e *entry) {
	id := e.auth.Identity()
	a.revMu.Lock()
	if set := a.byIdentity[id]; set != nil {
		delete(set, e)
		if len(set) == 0 {
			delete(a.byIdentity, id)
		}
	}
	a.revMu.Unlock()
}

// onExit runs whenever ristretto lets go of a value: eviction, rejection by
// the admission policy, TTL cleanup, Del, replacement and Clear.
func (a *Authenticator) onExit(e *entry) {
	if e != nil && e.auth != nil {
		a.revRemove(e)
	}
}

// Forget drops the cached lookups that resolved to identity
// (broker.Auth.Identity()), e.g. when the auth record changed or was deleted;
// lookups in flight when Forget is called are not cached.
func (a *Authenticator) Forget(identity string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.gen.Add(1)
	a.revMu.Lock()
	set := a.byIdentity[identity]
	delete(a.byIdentity, identity)
	a.revMu.Unlock()
	for e := range set {
		a.cache.Del(e.key) // calls onExit synchronously: revMu must not be held
	}
}

// Stats returns the lookup counters.
func (a *Authenticator) Stats() Stats {
	return Stats{
		Hits:    a.hits.Load(),
		Misses:  a.misses.Load(),
		Shared:  a.shared.Load(),
		Refused: a.refused.Load(),
		Errors:  a.errs.Load(),
		Limited: a.limited.Load(),
	}
}

// Close stops the cache's goroutines and closes idle connections. Lookups
// still running finish uncached; later calls work without a cache.
func (a *Authenticator) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.closed = true
	a.cache.Close()
	a.closeTransport()
}

func (a *Authenticator) closeTransport() {
	if a.transport != nil {
		a.transport.CloseIdleConnections()
	}
}

// credentials reads the configured headers from r; nil when none carries a
// credential (absent, blank or a bare "Bearer").
func (a *Authenticator) credentials(r *http.Request) *credentials {
	var c *credentials
	h := sha256.New()
	var n [4]byte
	write := func(s string) {
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	for _, name := range a.cfg.headers {
		vals := r.Header.Values(name)
		if len(vals) == 0 {
			continue
		}
		present := false
		for _, v := range vals {
			if t := stripBearer(v); t != "" {
				present = true
				if c == nil {
					c = &credentials{header: make(http.Header, len(a.cfg.headers))}
				}
				if c.token == "" {
					c.token = t
				}
			}
		}
		if !present {
			continue
		}
		c.header[name] = append([]string(nil), vals...)
		write(name)
		for _, v := range vals {
			write(v)
		}
	}
	if c == nil {
		return nil
	}
	c.key = string(h.Sum(nil))
	return c
}

// stripBearer trims v and drops an optional, case-insensitive "Bearer " prefix.
func stripBearer(v string) string {
	v = strings.TrimSpace(v)
	if len(v) >= 6 && strings.EqualFold(v[:6], "bearer") && (len(v) == 6 || v[6] == ' ' || v[6] == '\t') {
		v = strings.TrimSpace(v[6:])
	}
	return v
}

package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// Defaults applied by New to zero fields of Config.
const (
	DefaultMethod      = http.MethodGet
	DefaultTimeout     = 5 * time.Second
	DefaultCacheTTL    = time.Minute
	DefaultNegativeTTL = 10 * time.Second
	DefaultCacheSize   = 10000

	// DefaultMaxConcurrent bounds the endpoint lookups in flight. Lookups are
	// short (a session check); 32 at once serves bursts of thousands of new
	// tokens a second while one flood cannot open thousands of connections.
	DefaultMaxConcurrent = 32
	// DefaultQueueTimeout is the longest a new lookup waits for a free slot
	// before it is refused: long enough for a burst to drain, short enough
	// that a client hears "retry" instead of hanging behind a stuck endpoint.
	DefaultQueueTimeout = time.Second
)

// DefaultHeaders are the credential headers read when Config.Headers is empty.
var DefaultHeaders = []string{"Authorization"}

// Config says how the credentials on a subscription POST become an auth record:
// by asking the site's own endpoint (URL) or by verifying a JWT locally (JWT).
// Exactly one of URL and JWT is set.
type Config struct {
	// URL is the site's endpoint; the POST's credential headers (Headers) are
	// forwarded to it and a 2xx answer carries the auth record as JSON.
	URL string
	// Method of the lookup request; default GET.
	Method string
	// Timeout of one lookup (endpoint request or JWKS fetch); default 5s.
	Timeout time.Duration
	// Headers are the credential headers read from the POST and forwarded to
	// URL; default ["Authorization"]. ["Cookie"] serves cookie sessions (URL only).
	Headers []string
	// RecordPath is the dot path of the auth record in the endpoint's JSON
	// response, e.g. "record" (PocketBase's auth-refresh shape); "" = the whole body.
	RecordPath string
	// JWT verifies the token locally instead of asking URL.
	JWT *JWTConfig

	// CacheTTL is how long a resolved auth record is cached; default 1m,
	// negative = never cached. A JWT's entry never outlives its exp.
	CacheTTL time.Duration
	// NegativeTTL is how long a refusal (401/403, bad JWT) is cached; default
	// 10s, negative = never cached. Errors are never cached.
	NegativeTTL time.Duration
	// CacheSize is the maximum number of cached lookups; default 10000.
	CacheSize int
	// HTTPClient makes the lookups (tests). The default client follows no
	// redirects for URL lookups (a 3xx is an error) and has no timeout of its
	// own: Timeout applies per lookup.
	HTTPClient *http.Client

	// MaxConcurrent bounds the endpoint (URL) lookups in flight at once, and
	// the default client's connections to the endpoint; default 32, negative =
	// no limit. Only new lookups take a slot: cache hits (records and cached
	// refusals) and callers joining a lookup already in flight never wait.
	// JWT verification is local and not limited (a JWKS fetch is already one
	// at a time and rate-limited).
	MaxConcurrent int
	// MaxQueue is how many new lookups may wait for a slot; beyond it they
	// are refused at once with a *LimitError. Default MaxConcurrent, negative
	// = no waiting.
	MaxQueue int
	// QueueTimeout is the longest a lookup waits for a slot; default 1s.
	QueueTimeout time.Duration
	// MaxPerClient bounds one client's lookups in flight and waiting, so one
	// IP cannot take every slot; default MaxConcurrent/4 (at least 1),
	// negative = no per-client bound.
	MaxPerClient int
	// ClientIP names the client of a request for MaxPerClient (Caddy's
	// client IP, which honours trusted_proxies); default the host of RemoteAddr.
	ClientIP func(*http.Request) string
	// Logger receives a warning, at most one per 10s, naming the client IPs
	// whose lookups the limit refused; default none.
	Logger *zap.Logger
}

// JWTConfig verifies tokens locally. Exactly one of Secret, PublicKey and JWKSURL is set.
type JWTConfig struct {
	// Secret is the HMAC key for HS256/HS384/HS512.
	Secret string
	// PublicKey is a PEM public key (RSA, EC or Ed25519; PKIX, PKCS#1 or a
	// certificate) for RS*/PS*, ES* or EdDSA. The caller reads the file.
	PublicKey string
	// JWKSURL is fetched on first use, refreshed when a token names an unknown
	// kid (at most once per 30s) and when the set is older than an hour.
	JWKSURL string
	// Algorithms are the accepted "alg" values; default derived from the key.
	// "none" is never accepted, nor an algorithm that does not fit the key.
	Algorithms []string
	// Issuer and Audience are checked when set.
	Issuer, Audience string
}

// Validate reports the first problem with c, or nil. It does not change c.
func (c *Config) Validate() error {
	_, err := c.normalize()
	return err
}

// normalized is a validated Config with defaults applied.
type normalized struct {
	Config
	url     *url.URL // nil for JWT
	headers []string // canonical, deduplicated
	path    []string // RecordPath split on "."
	jwt     *jwtSetup
}

// jwtSetup is a validated JWTConfig.
type jwtSetup struct {
	secret  []byte
	pub     crypto.PublicKey
	jwksURL string
	methods []string
	issuer  string
	aud     string
}

func (c *Config) normalize() (*normalized, error) {
	if c == nil {
		return nil, errors.New("auth: no config")
	}
	n := &normalized{Config: *c}
	switch {
	case c.URL != "" && c.JWT != nil:
		return nil, errors.New("auth: url and jwt are mutually exclusive")
	case c.URL == "" && c.JWT == nil:
		return nil, errors.New("auth: needs url (the site's endpoint) or jwt")
	}

	if c.Timeout < 0 {
		return nil, fmt.Errorf("auth: timeout must not be negative (got %v)", c.Timeout)
	}
	if n.Timeout == 0 {
		n.Timeout = DefaultTimeout
	}
	if n.CacheTTL == 0 {
		n.CacheTTL = DefaultCacheTTL
	}
	if n.NegativeTTL == 0 {
		n.NegativeTTL = DefaultNegativeTTL
	}
	if c.CacheSize < 0 {
		return nil, fmt.Errorf("auth: cache_size must not be negative (got %d)", c.CacheSize)
	}
	if n.CacheSize == 0 {
		n.CacheSize = DefaultCacheSize
	}

	if c.QueueTimeout < 0 {
		return nil, fmt.Errorf("auth: queue timeout must not be negative (got %v)", c.QueueTimeout)
	}
	if n.MaxConcurrent == 0 {
		n.MaxConcurrent = DefaultMaxConcurrent
	}
	if n.MaxConcurrent > 0 {
		if n.MaxQueue == 0 {
			n.MaxQueue = n.MaxConcurrent
		}
		if n.QueueTimeout == 0 {
			n.QueueTimeout = DefaultQueueTimeout
		}
		if n.MaxPerClient == 0 {
			n.MaxPerClient = max(1, n.MaxConcurrent/4)
		}
	}

	hs := c.Headers
	if len(hs) == 0 {
		hs = DefaultHeaders
	}
	for _, h := range hs {
		h = strings.TrimSpace(h)
		if !validToken(h) {
			return nil, fmt.Errorf("auth: %q is not a valid header name", h)
		}
		h = http.CanonicalHeaderKey(h)
		switch h {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Accept", "Upgrade", "Te", "Trailer", "Keep-Alive":
			return nil, fmt.Errorf("auth: header %s cannot carry credentials", h)
		}
		if !slices.Contains(n.headers, h) {
			n.headers = append(n.headers, h)
		}
	}
	n.Headers = n.headers

	if c.URL != "" {
		u, err := parseHTTPURL("url", c.URL)
		if err != nil {
			return nil, err
		}
		n.url = u
		n.Method = strings.ToUpper(strings.TrimSpace(c.Method))
		if n.Method == "" {
			n.Method = DefaultMethod
		}
		if !validToken(n.Method) || n.Method == http.MethodConnect {
			return nil, fmt.Errorf("auth: %q is not a usable HTTP method", c.Method)
		}
		if c.RecordPath != "" {
			n.path = strings.Split(c.RecordPath, ".")
			if slices.Contains(n.path, "") {
				return nil, fmt.Errorf("auth: record_path %q has an empty segment (use a dot path such as \"record\" or \"data.user\")", c.RecordPath)
			}
		}
		return n, nil
	}

	if slices.Contains(n.headers, "Cookie") {
		return nil, errors.New("auth: jwt reads the token from a header such as Authorization; the Cookie header works only with url")
	}
	js, err := c.JWT.setup()
	if err != nil {
		return nil, err
	}
	n.jwt = js
	return n, nil
}

func (j *JWTConfig) setup() (*jwtSetup, error) {
	s := &jwtSetup{issuer: j.Issuer, aud: j.Audience}
	sources := 0
	for _, v := range []string{j.Secret, j.PublicKey, j.JWKSURL} {
		if v != "" {
			sources++
		}
	}
	switch {
	case sources == 0:
		return nil, errors.New("auth: jwt needs one of secret, public_key, jwks_url")
	case sources > 1:
		return nil, errors.New("auth: jwt takes only one of secret, public_key, jwks_url")
	}

	var defaults []string
	var fits func(m jwt.SigningMethod) bool
	var keyKind string
	switch {
	case j.Secret != "":
		s.secret = []byte(j.Secret)
		defaults = []string{"HS256", "HS384", "HS512"}
		keyKind = "a secret (HS256, HS384, HS512)"
		fits = func(m jwt.SigningMethod) bool { _, ok := m.(*jwt.SigningMethodHMAC); return ok }
	case j.PublicKey != "":
		pub, err := parsePublicKeyPEM(j.PublicKey)
		if err != nil {
			return nil, err
		}
		s.pub = pub
		defaults = methodsForKey(pub)
		keyKind = keyDescription(pub) + " (" + strings.Join(defaults, ", ") + ")"
		fits = func(m jwt.SigningMethod) bool { return methodFitsKey(m, pub) }
	default:
		u, err := parseHTTPURL("jwt jwks_url", j.JWKSURL)
		if err != nil {
			return nil, err
		}
		s.jwksURL = u.String()
		defaults = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
		keyKind = "a JWKS (RS*, PS*, ES*, EdDSA)"
		fits = func(m jwt.SigningMethod) bool {
			_, hmac := m.(*jwt.SigningMethodHMAC)
			return !hmac
		}
	}

	if len(j.Algorithms) == 0 {
		s.methods = defaults
		return s, nil
	}
	for _, alg := range j.Algorithms {
		alg = strings.TrimSpace(alg)
		if strings.EqualFold(alg, "none") {
			return nil, errors.New(`auth: jwt algorithm "none" is never accepted`)
		}
		m := jwt.GetSigningMethod(alg)
		if m == nil {
			return nil, fmt.Errorf("auth: jwt algorithm %q is unknown (known: HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA)", alg)
		}
		if !fits(m) {
			return nil, fmt.Errorf("auth: jwt algorithm %s does not fit %s", alg, keyKind)
		}
		if !slices.Contains(s.methods, alg) {
			s.methods = append(s.methods, alg)
		}
	}
	return s, nil
}

func parseHTTPURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("auth: %s is not a valid URL: %v", what, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("auth: %s %q must be an absolute http:// or https:// URL", what, u.Redacted())
	}
	return u, nil
}

// parsePublicKeyPEM reads the first PEM block: a PKIX public key, a PKCS#1 RSA
// public key or a certificate.
func parsePublicKeyPEM(s string) (crypto.PublicKey, error) {
	block, _ := pem.Decode([]byte(strings.TrimSpace(s)))
	if block == nil {
		return nil, errors.New("auth: jwt public_key is not PEM (expected -----BEGIN PUBLIC KEY-----)")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(block.Bytes)
		if err == nil {
			pub = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE") {
			return nil, fmt.Errorf("auth: jwt public_key holds a %s; give the public key", block.Type)
		}
		return nil, fmt.Errorf("auth: jwt public_key: unsupported PEM block %q (want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: jwt public_key: %v", err)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("auth: jwt public_key: RSA key of %d bits is too small (2048 at least)", k.N.BitLen())
		}
		return k, nil
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256, 384, 521:
			return k, nil
		}
		return nil, fmt.Errorf("auth: jwt public_key: unsupported EC curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("auth: jwt public_key: unsupported key type %T", pub)
}

func methodsForKey(pub crypto.PublicKey) []string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return []string{"ES256"}
		case 384:
			return []string{"ES384"}
		case 521:
			return []string{"ES512"}
		}
	case ed25519.PublicKey:
		return []string{"EdDSA"}
	}
	return nil
}

func keyDescription(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "an RSA public key"
	case *ecdsa.PublicKey:
		return "an EC " + k.Curve.Params().Name + " public key"
	case ed25519.PublicKey:
		return "an Ed25519 public key"
	}
	return fmt.Sprintf("a %T", pub)
}

// methodFitsKey says whether m verifies with key: never an HMAC method with a
// public key (alg confusion), and ES* only with its own curve.
func methodFitsKey(m jwt.SigningMethod, key crypto.PublicKey) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		switch m.(type) {
		case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
			return true
		}
	case *ecdsa.PublicKey:
		em, ok := m.(*jwt.SigningMethodECDSA)
		return ok && em.CurveBits == k.Curve.Params().BitSize
	case ed25519.PublicKey:
		_, ok := m.(*jwt.SigningMethodEd25519)
		return ok
	}
	return false
}

// validToken reports whether s is an RFC 9110 token (header names, methods).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

package realtime

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-realtime/realtime/auth"
	"github.com/caddy-realtime/realtime/broker"
	"github.com/caddy-realtime/realtime/rules"
)

// AuthConfig says how the credentials of a subscription POST become an auth
// record: by asking the site's own endpoint (URL) or by verifying a JWT.
type AuthConfig struct {
	// URL of the site's endpoint; the POST's credential headers are forwarded
	// to it and a 2xx JSON auth record means authenticated, 401/403 guest.
	URL string `json:"url,omitempty"`
	// Method of the lookup request. Default: GET.
	Method string `json:"method,omitempty"`
	// Timeout of the lookup request. Default: 5s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Headers carrying credentials, read from the POST and forwarded.
	// Default: ["Authorization"]; ["Cookie"] for cookie sessions.
	Headers []string `json:"headers,omitempty"`
	// RecordPath is the dot path of the auth record in the endpoint's JSON,
	// e.g. "record" for PocketBase's auth-refresh response. Default: the whole body.
	RecordPath string `json:"record_path,omitempty"`
	// JWT verifies tokens locally instead of calling URL.
	JWT *JWTConfig `json:"jwt,omitempty"`
	// CacheTTL of successful lookups. Default: 1m.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`
	// NegativeTTL of refused lookups. Default: 10s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`
	// CacheSize is the most lookups kept. Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`
	// MaxConcurrent bounds the new lookups of URL in flight (and the
	// connections to it). Up to as many more wait at most 1s for a slot; one
	// client IP may hold a quarter of them (at least 1); the rest get 503 with
	// Retry-After. Cached tokens and lookups already in flight never wait. JWT
	// verification is local and not limited. Default: 32; negative: no limit.
	MaxConcurrent int `json:"max_concurrent,omitempty"`
}

// JWTConfig verifies tokens locally; claims become the auth record
// (`sub` is the id unless an `id` claim is present).
type JWTConfig struct {
	// Secret for HS256/384/512.
	Secret string `json:"secret,omitempty"`
	// PublicKeyFile is a PEM file with an RSA or EC public key (RS256, ES256...).
	PublicKeyFile string `json:"public_key_file,omitempty"`
	// JWKSURL is fetched for keys, selected by kid.
	JWKSURL string `json:"jwks_url,omitempty"`
	// Algorithms allowed. Default: those of the key type. "none" is never allowed.
	Algorithms []string `json:"algorithms,omitempty"`
	Issuer     string   `json:"issuer,omitempty"`
	Audience   string   `json:"audience,omitempty"`
}

// CollectionConfig holds a collection's PocketBase rules. An unset rule means
// superusers only (PocketBase's null); "" means everyone.
type CollectionConfig struct {
	ListRule *string `json:"list_rule,omitempty"`
	ViewRule *string `json:"view_rule,omitempty"`
	// HiddenFields are the fields PocketBase marks hidden: rules may read
	// them (so events carry them) but only superusers receive them, and a
	// subscription filter on one matches nothing.
	HiddenFields []string `json:"hidden_fields,omitempty"`
}

// TopicConfig restricts subscriptions to custom topics matching Pattern.
type TopicConfig struct {
	Pattern string `json:"pattern"`
	Rule    string `json:"rule"`
}

// hasAccessConfig reports whether any access option is set; without any, every
// collection is readable by everyone (a plain event relay).
func (h *Handler) hasAccessConfig() bool {
	return h.Auth != nil || h.Superusers != nil || len(h.Collections) > 0 || len(h.Topics) > 0
}

// buildRuleSet compiles every rule; a bad rule fails the config load.
func (h *Handler) buildRuleSet() (*broker.RuleSet, error) {
	rs := &broker.RuleSet{Open: !h.hasAccessConfig(), Collections: map[string]*broker.CollectionRules{}, Logger: h.logger}
	compile := func(where, expr string) (*rules.Rule, error) {
		r, err := rules.Compile(expr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		return r, nil
	}
	if h.Superusers != nil {
		r, err := compile("superusers", *h.Superusers)
		if err != nil {
			return nil, err
		}
		rs.Superusers = r
	}
	for name, c := range h.Collections {
		cr := &broker.CollectionRules{Hidden: c.HiddenFields}
		for _, x := range []struct {
			label string
			expr  *string
			dst   **rules.Rule
		}{{"list_rule", c.ListRule, &cr.List}, {"view_rule", c.ViewRule, &cr.View}} {
			if x.expr == nil {
				continue
			}
			r, err := compile(fmt.Sprintf("collection %s %s", name, x.label), *x.expr)
			if err != nil {
				return nil, err
			}
			*x.dst = r
		}
		rs.Collections[name] = cr
	}
	for _, t := range h.Topics {
		if _, err := path.Match(t.Pattern, ""); err != nil {
			return nil, fmt.Errorf("topic %q: bad pattern: %w", t.Pattern, err)
		}
		r, err := compile(fmt.Sprintf("topic %s", t.Pattern), t.Rule)
		if err != nil {
			return nil, err
		}
		rs.Topics = append(rs.Topics, broker.TopicRule{Pattern: t.Pattern, Rule: r})
	}
	return rs, nil
}

func (a *AuthConfig) authConfig() (auth.Config, error) {
	c := auth.Config{
		URL:         a.URL,
		Method:      a.Method,
		Timeout:     time.Duration(a.Timeout),
		Headers:     a.Headers,
		RecordPath:  a.RecordPath,
		CacheTTL:    time.Duration(a.CacheTTL),
		NegativeTTL: time.Duration(a.NegativeTTL),
		CacheSize:   a.CacheSize,

		MaxConcurrent: a.MaxConcurrent,
		ClientIP:      caddyClientIP,
	}
	if j := a.JWT; j != nil {
		c.JWT = &auth.JWTConfig{Secret: j.Secret, JWKSURL: j.JWKSURL, Algorithms: j.Algorithms, Issuer: j.Issuer, Audience: j.Audience}
		if j.PublicKeyFile != "" {
			pem, err := os.ReadFile(j.PublicKeyFile)
			if err != nil {
				return c, fmt.Errorf("auth jwt public_key: %w", err)
			}
			c.JWT.PublicKey = string(pem)
		}
	}
	return c, c.Validate()
}

// authenticate turns the POST's credentials into an auth record and marks superusers.
// The auth record keeps a way to look the same credentials up again, for
// when an event may have revoked them (broker.Auth.Recheck).
func authenticate(a *auth.Authenticator, rs *broker.RuleSet) func(*http.Request) (*broker.Auth, error) {
	var lookup func(*http.Request) (*broker.Auth, error)
	lookup = func(r *http.Request) (*broker.Auth, error) {
		rec, err := a.Authenticate(r)
		if err != nil || rec == nil {
			return nil, err
		}
		cp := *rec // cached records are shared: never mutate them
		cp.Superuser = rs.IsSuperuser(&cp)
		again, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, r.URL.String(), nil)
		again.Header, again.RemoteAddr = r.Header.Clone(), r.RemoteAddr
		cp.Recheck = func() (*broker.Auth, error) { return lookup(again) }
		return &cp, nil
	}
	return lookup
}

func logRules(log *zap.Logger, name string, rs *broker.RuleSet) {
	if rs.Open {
		log.Info("realtime broker has no access rules: every client receives every event",
			zap.String("broker", name))
		return
	}
	lines := rs.Describe()
	sort.Strings(lines)
	log.Info("realtime broker rules", zap.String("broker", name), zap.String("collections", strings.Join(lines, "; ")))
}

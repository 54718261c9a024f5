// Package realtime is the Caddy glue of caddy-realtime: the http.handlers.realtime
// handler, the admin.api.realtime admin routes, and the pool of brokers that
// keeps streams and subscriptions alive across config reloads.
//
// Only this package imports Caddy; broker, handler, admin and rules are plain Go.
package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-realtime/realtime/auth"
	"github.com/caddy-realtime/realtime/broker"
	"github.com/caddy-realtime/realtime/handler"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves PocketBase's realtime endpoint: GET opens a Server-Sent-Events
// stream, POST sets the client's subscriptions. Events are posted to the admin API.
type Handler struct {
	// Broker names the hub this endpoint joins; the admin API selects it with
	// ?broker=. Endpoints with the same name share clients and events. Default: "default".
	Broker string `json:"broker,omitempty"`

	// IdleTimeout closes a stream that has delivered no message for this long
	// (heartbeats do not count). 0 turns it off. Default: 5m.
	IdleTimeout *caddy.Duration `json:"idle_timeout,omitempty"`

	// MaxLifetime closes every stream after this long. Default: 0 (off).
	MaxLifetime caddy.Duration `json:"max_lifetime,omitempty"`

	// Heartbeat sends an SSE comment line after this much silence. 0 turns it off. Default: 15s.
	Heartbeat *caddy.Duration `json:"heartbeat,omitempty"`

	// WriteTimeout is the deadline for one write to a client; a client that
	// misses it is evicted. Default: 10s.
	WriteTimeout *caddy.Duration `json:"write_timeout,omitempty"`

	// MaxClients caps open streams; over it, GET answers 503. 0 = unlimited.
	// Default: the process's open-file limit minus headroom for the admin API,
	// upstream lookups and Caddy's own files (unlimited where it can't be read).
	MaxClients *int `json:"max_clients,omitempty"`

	// MaxClientsPerIP caps open streams per client IP (Caddy's client IP, so
	// trusted_proxies counts); over it, GET answers 429. 0 = unlimited. Default: 100.
	MaxClientsPerIP *int `json:"max_clients_per_ip,omitempty"`

	// MaxSubscriptionBytes caps one client's topic strings together; over it
	// the subscription POST gets 400. 0 = unlimited. Default: 65536 (64 KiB).
	MaxSubscriptionBytes *int `json:"max_subscription_bytes,omitempty"`

	// MaxTopicVariants caps one client's subscriptions that share a topic
	// base (posts/*?options=... spellings); over it, 400. 0 = unlimited. Default: 16.
	MaxTopicVariants *int `json:"max_topic_variants,omitempty"`

	// MaxQueuedBytes caps the memory every client's pending frames hold
	// together (a frame queued for many clients counts once); over it clients
	// are evicted: those whose streams refuse bytes (stalled) first, then the
	// rest, the largest queues first. Stalled streams are also evicted while
	// the bytes owed to all clients (each frame counted per client) pass it.
	// 0 = unlimited. Default: 268435456 (256 MiB).
	MaxQueuedBytes *int64 `json:"max_queued_bytes,omitempty"`

	// ResumeWindow is how long the broker keeps published events and custom
	// messages for clients that reconnect with Last-Event-ID. 0 = off. Default: 2m.
	ResumeWindow *caddy.Duration `json:"resume_window,omitempty"`

	// ResumeBytes caps the memory those kept events may hold (an estimate);
	// the oldest go first. 0 = no cap. Default: 16777216 (16 MiB).
	ResumeBytes *int64 `json:"resume_bytes,omitempty"`

	// BodyTimeout is how long a subscription POST may take to send its body. Default: 5s.
	BodyTimeout *caddy.Duration `json:"body_timeout,omitempty"`

	// MaxSubscriptions caps topics per client. Default: 1000 (PocketBase).
	MaxSubscriptions int `json:"max_subscriptions,omitempty"`

	// MaxTopicLength caps one topic, in bytes. Default: 2500 (PocketBase).
	MaxTopicLength int `json:"max_topic_length,omitempty"`

	// ClientQueue is how many bytes may wait for one client before it is
	// evicted. Default: 1048576 (1 MiB).
	ClientQueue int `json:"client_queue,omitempty"`

	// Wildcard allows the "*" topic (every collection's events). Default: true.
	Wildcard *bool `json:"wildcard,omitempty"`

	// Compress lets Caddy's encode handler compress streams (a compressor per
	// stream). Default: false (streams are sent with Cache-Control: no-transform).
	Compress bool `json:"compress,omitempty"`

	// Hijack serves HTTP/1.1 streams, plain and over TLS, from the broker's
	// writers instead of a goroutine per stream (much less memory per idle
	// client). HTTP/2 and compressed streams, and platforms without epoll (all
	// but Linux), always use a goroutine. Default: true.
	Hijack *bool `json:"hijack,omitempty"`

	// CORSOrigins narrows Access-Control-Allow-Origin. Default: any origin ("*"), as PocketBase.
	CORSOrigins []string `json:"cors_origins,omitempty"`

	// Auth says how a subscription POST's credentials become an auth record.
	// Default: none (every client is a guest).
	Auth *AuthConfig `json:"auth,omitempty"`

	// Superusers is a rule over @request.auth.* naming who bypasses collection rules.
	Superusers *string `json:"superusers,omitempty"`

	// Collections maps collection names (or ids) to their list and view rules.
	// Without any access option every collection is readable by everyone;
	// with some, a collection without rules is superusers only.
	Collections map[string]*CollectionConfig `json:"collections,omitempty"`

	// Topics restrict who may subscribe to custom topics, first match wins.
	Topics []TopicConfig `json:"topics,omitempty"`

	// TransportRaw says what carries the broker's events: "memory" (one
	// node) or "nats" (a JetStream stream shared by several nodes).
	// Default: memory.
	TransportRaw json.RawMessage `json:"transport,omitempty" caddy:"namespace=realtime.transports inline_key=protocol"`

	transport TransportModule
	broker    *broker.Broker
	authn     *auth.Authenticator
	handler   *handler.Handler
	logger    *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.realtime",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision joins (or creates) the named broker and registers this config's
// policy with the realtime app, which puts it in force when the config commits.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.Broker == "" {
		h.Broker = DefaultBroker
	}
	appIface, err := ctx.App("realtime")
	if err != nil {
		return fmt.Errorf("loading realtime app: %w", err)
	}
	app := appIface.(*App)
	options := h.brokerOptions() // before loading modules, which clears their raw JSON
	tkey := transportKey(h.TransportRaw)
	h.transport = MemoryTransport{}
	if len(h.TransportRaw) > 0 {
		mod, err := ctx.LoadModule(h, "TransportRaw")
		if err != nil {
			return fmt.Errorf("loading transport: %w", err)
		}
		h.transport = mod.(TransportModule)
	}
	policy := h.policy()
	rs, err := h.buildRuleSet()
	if err != nil {
		return err
	}
	policy.Access = rs
	var authn *auth.Authenticator
	if h.Auth != nil {
		cfg, err := h.Auth.authConfig()
		if err != nil {
			return err
		}
		cfg.Logger = h.logger
		if authn, err = auth.New(cfg); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		policy.ForgetAuth = authn.Forget
	}
	b, err := acquireBroker(h.Broker)
	if err != nil {
		if authn != nil {
			authn.Close()
		}
		return err
	}
	h.broker = b
	want := &brokerPolicy{broker: b, policy: policy, access: &accessState{authn: authn, rules: rs}, options: options, transport: h.transport, transportKey: tkey}
	got, err := app.register(h.Broker, want)
	if got != want && authn != nil {
		authn.Close() // an identical handler registered first: share its auth cache
	}
	if err != nil {
		return err
	}
	if got == want {
		h.authn = authn // this handler owns it and closes it in Cleanup
	}
	h.handler = &handler.Handler{
		Broker:      b,
		ClientIP:    caddyClientIP,
		CORSOrigins: h.CORSOrigins,
		Compress:    h.Compress,
		Hijack:      h.Hijack == nil || *h.Hijack,
		BodyTimeout: 5 * time.Second,
		Logger:      h.logger,
	}
	if h.BodyTimeout != nil {
		h.handler.BodyTimeout = time.Duration(*h.BodyTimeout)
	}
	if got.endpoint == nil {
		got.endpoint = h.handler
	}
	if got.access.authn != nil {
		h.handler.Authenticate = authenticate(got.access.authn, got.access.rules)
	}
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	return watchProcessExit(ctx)
}

func (h *Handler) policy() *broker.Policy {
	p := broker.DefaultPolicy()
	if h.IdleTimeout != nil {
		p.IdleTimeout = time.Duration(*h.IdleTimeout)
	}
	p.MaxLifetime = time.Duration(h.MaxLifetime)
	if h.Heartbeat != nil {
		p.Heartbeat = time.Duration(*h.Heartbeat)
	}
	if h.WriteTimeout != nil {
		p.WriteTimeout = time.Duration(*h.WriteTimeout)
	}
	if h.MaxClients != nil {
		p.MaxClients = *h.MaxClients
	} else {
		p.MaxClients = defaultMaxClients()
	}
	if h.MaxClientsPerIP != nil {
		p.MaxClientsPerIP = *h.MaxClientsPerIP
	}
	if h.MaxSubscriptionBytes != nil {
		p.MaxSubscriptionBytes = *h.MaxSubscriptionBytes
	}
	if h.MaxTopicVariants != nil {
		p.MaxTopicVariants = *h.MaxTopicVariants
	}
	if h.MaxQueuedBytes != nil {
		p.MaxQueuedBytes = *h.MaxQueuedBytes
	}
	if h.ResumeWindow != nil {
		p.ResumeWindow = time.Duration(*h.ResumeWindow)
	}
	if h.ResumeBytes != nil {
		p.ResumeBytes = *h.ResumeBytes
	}
	if h.MaxSubscriptions > 0 {
		p.MaxSubscriptions = h.MaxSubscriptions
	}
	if h.MaxTopicLength > 0 {
		p.MaxTopicLength = h.MaxTopicLength
	}
	if h.ClientQueue > 0 {
		p.ClientQueue = h.ClientQueue
	}
	if h.Wildcard != nil {
		p.Wildcard = *h.Wildcard
	}
	p.Logger = h.logger
	return p
}

// Validate checks values Provision cannot fix up.
func (h *Handler) Validate() error {
	for name, d := range map[string]*caddy.Duration{"idle_timeout": h.IdleTimeout, "heartbeat": h.Heartbeat, "write_timeout": h.WriteTimeout} {
		if d != nil && *d < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	if h.MaxLifetime < 0 {
		return fmt.Errorf("max_lifetime must not be negative")
	}
	for name, n := range map[string]int{"max_subscriptions": h.MaxSubscriptions, "max_topic_length": h.MaxTopicLength, "client_queue": h.ClientQueue} {
		if n < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	for name, n := range map[string]*int{"max_clients": h.MaxClients, "max_clients_per_ip": h.MaxClientsPerIP, "max_subscription_bytes": h.MaxSubscriptionBytes, "max_topic_variants": h.MaxTopicVariants} {
		if n != nil && *n < 0 {
			return fmt.Errorf("%s must not be negative", name)
		}
	}
	if h.MaxQueuedBytes != nil && *h.MaxQueuedBytes < 0 {
		return fmt.Errorf("max_queued_bytes must not be negative")
	}
	if h.ResumeWindow != nil && *h.ResumeWindow < 0 {
		return fmt.Errorf("resume_window must not be negative")
	}
	if h.ResumeBytes != nil && *h.ResumeBytes < 0 {
		return fmt.Errorf("resume_bytes must not be negative")
	}
	if h.BodyTimeout != nil && *h.BodyTimeout < 0 {
		return fmt.Errorf("body_timeout must not be negative")
	}
	return nil
}

// Cleanup drops this config's reference to the broker; the broker (and its
// streams) lives on while a newer config still uses it.
func (h *Handler) Cleanup() error {
	if h.authn != nil {
		h.authn.Close()
	}
	if h.broker == nil {
		return nil
	}
	_, err := brokers.Delete(h.Broker)
	return err
}

// ServeHTTP serves the realtime endpoint; it never calls next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h.handler.ServeHTTP(w, r)
	return nil
}

// caddyClientIP is Caddy's idea of the client address, which honours trusted_proxies.
func caddyClientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}

// watchProcessExit closes every stream when Caddy is exiting: an open SSE
// stream would otherwise make `caddy stop` wait out an endless grace period.
// A reload also emits "stopping", but then streams must stay open.
func watchProcessExit(ctx caddy.Context) error {
	app, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading events app: %w", err)
	}
	return app.(*caddyevents.App).On("stopping", exitHandler{})
}

type exitHandler struct{}

func (exitHandler) Handle(context.Context, caddy.Event) error {
	if caddy.Exiting() {
		closeAllStreams()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

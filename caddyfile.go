package realtime

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("realtime", parseCaddyfile)
	// Ordered before reverse_proxy so `realtime /api/realtime` next to a
	// catch-all proxy works without a global `order` option.
	httpcaddyfile.RegisterDirectiveOrder("realtime", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var rt Handler
	err := rt.UnmarshalCaddyfile(h.Dispenser)
	return &rt, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	realtime [<matcher>] {
//		broker            <name>
//		idle_timeout      <duration>
//		max_lifetime      <duration>
//		heartbeat         <duration>
//		write_timeout     <duration>
//		max_clients       <n>
//		max_clients_per_ip <n>
//		max_subscription_bytes <size>
//		max_topic_variants <n>
//		max_queued_bytes  <size>
//		resume_window     <duration>
//		resume_bytes      <size>
//		body_timeout      <duration>
//		max_subscriptions <n>
//		max_topic_length  <n>
//		client_queue      <size>
//		wildcard          on|off
//		compress          on|off
//		hijack            on|off
//		cors_origins      <origin...>
//		auth {
//			url         <url>
//			method      GET|POST
//			timeout     <duration>
//			headers     <name...>
//			record_path <path>
//			cache_ttl   <duration>
//			negative_ttl <duration>
//			cache_size  <n>
//			max_concurrent <n>  # new lookups of url in flight; default 32 (see AuthConfig.MaxConcurrent)
//			jwt {
//				secret     <secret>
//				public_key <pem file>
//				jwks_url   <url>
//				algorithms <alg...>
//				issuer     <iss>
//				audience   <aud>
//			}
//		}
//		superusers "<rule>"
//		collection <name> {
//			list_rule "<rule>"
//			view_rule "<rule>"
//			hidden_fields <field...>
//		}
//		topic <pattern> "<rule>"
//		transport memory | nats [<url...>] { ... }  # see unmarshalTransport
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name; the matcher was consumed by the helper
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		sub := d.Val()
		var err error
		switch sub {
		case "broker":
			h.Broker, err = oneArg(d)
		case "idle_timeout":
			h.IdleTimeout, err = durationArg(d)
		case "max_lifetime":
			var v *caddy.Duration
			if v, err = durationArg(d); err == nil {
				h.MaxLifetime = *v
			}
		case "heartbeat":
			h.Heartbeat, err = durationArg(d)
		case "write_timeout":
			h.WriteTimeout, err = durationArg(d)
		case "max_clients":
			h.MaxClients, err = intPtrArg(d)
		case "max_clients_per_ip":
			h.MaxClientsPerIP, err = intPtrArg(d)
		case "max_subscription_bytes":
			var n int64
			if n, err = sizeOrZeroArg(d); err == nil {
				v := int(n)
				h.MaxSubscriptionBytes = &v
			}
		case "max_topic_variants":
			h.MaxTopicVariants, err = intPtrArg(d)
		case "max_queued_bytes":
			var n int64
			if n, err = sizeOrZeroArg(d); err == nil {
				h.MaxQueuedBytes = &n
			}
		case "resume_window":
			h.ResumeWindow, err = durationArg(d)
		case "resume_bytes":
			var n int64
			if n, err = sizeOrZeroArg(d); err == nil {
				h.ResumeBytes = &n
			}
		case "body_timeout":
			h.BodyTimeout, err = durationArg(d)
		case "max_subscriptions":
			h.MaxSubscriptions, err = intArg(d)
		case "max_topic_length":
			h.MaxTopicLength, err = intArg(d)
		case "client_queue":
			h.ClientQueue, err = sizeArg(d)
		case "wildcard":
			var on bool
			if on, err = onOffArg(d); err == nil {
				h.Wildcard = &on
			}
		case "compress":
			h.Compress, err = onOffArg(d)
		case "hijack":
			var on bool
			if on, err = onOffArg(d); err == nil {
				h.Hijack = &on
			}
		case "cors_origins":
			h.CORSOrigins = d.RemainingArgs()
			if len(h.CORSOrigins) == 0 {
				err = d.Errf("cors_origins: expected at least one origin, e.g. https://example.com or *")
			}
		case "auth":
			h.Auth = new(AuthConfig)
			err = h.Auth.unmarshal(d)
		case "superusers":
			var rule string
			if rule, err = oneArg(d); err == nil {
				h.Superusers = &rule
			}
		case "collection":
			err = h.unmarshalCollection(d)
		case "transport":
			err = h.unmarshalTransport(d)
		case "topic":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Errf(`topic: expected a pattern and a rule, e.g. topic admin_* "@request.auth.isAdmin = true"`)
			}
			h.Topics = append(h.Topics, TopicConfig{Pattern: args[0], Rule: args[1]})
		default:
			return d.Errf("unrecognized realtime subdirective %q", sub)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) unmarshalCollection(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Errf("collection: expected a collection name, e.g. collection posts { list_rule \"\" }")
	}
	name := d.Val()
	if d.NextArg() {
		return d.Errf("collection %s: unexpected argument %q; rules go in a block", name, d.Val())
	}
	if h.Collections == nil {
		h.Collections = map[string]*CollectionConfig{}
	}
	if _, dup := h.Collections[name]; dup {
		return d.Errf("collection %s: configured twice", name)
	}
	c := &CollectionConfig{}
	h.Collections[name] = c
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if sub == "hidden_fields" {
			if c.HiddenFields = d.RemainingArgs(); len(c.HiddenFields) == 0 {
				return d.Errf("collection %s: hidden_fields: expected at least one field name", name)
			}
			continue
		}
		rule, err := oneArg(d)
		if err != nil {
			return err
		}
		switch sub {
		case "list_rule":
			c.ListRule = &rule
		case "view_rule":
			c.ViewRule = &rule
		default:
			return d.Errf("collection %s: unrecognized subdirective %q (expected list_rule, view_rule or hidden_fields)", name, sub)
		}
	}
	return nil
}

func (a *AuthConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.Errf("auth: unexpected argument %q; options go in a block", d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		var err error
		switch sub {
		case "url":
			a.URL, err = oneArg(d)
		case "method":
			a.Method, err = oneArg(d)
		case "timeout":
			a.Timeout, err = plainDuration(d)
		case "headers":
			if a.Headers = d.RemainingArgs(); len(a.Headers) == 0 {
				err = d.Errf("headers: expected at least one header name, e.g. Authorization or Cookie")
			}
		case "record_path":
			a.RecordPath, err = oneArg(d)
		case "cache_ttl":
			a.CacheTTL, err = plainDuration(d)
		case "negative_ttl":
			a.NegativeTTL, err = plainDuration(d)
		case "cache_size":
			a.CacheSize, err = intArg(d)
		case "max_concurrent":
			a.MaxConcurrent, err = intArg(d)
		case "jwt":
			a.JWT = new(JWTConfig)
			err = a.JWT.unmarshal(d)
		default:
			return d.Errf("auth: unrecognized subdirective %q", sub)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (j *JWTConfig) unmarshal(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		var err error
		switch sub {
		case "secret":
			j.Secret, err = oneArg(d)
		case "public_key":
			j.PublicKeyFile, err = oneArg(d)
		case "jwks_url":
			j.JWKSURL, err = oneArg(d)
		case "algorithms":
			if j.Algorithms = d.RemainingArgs(); len(j.Algorithms) == 0 {
				err = d.Errf("algorithms: expected at least one, e.g. HS256 or RS256")
			}
		case "issuer":
			j.Issuer, err = oneArg(d)
		case "audience":
			j.Audience, err = oneArg(d)
		default:
			return d.Errf("auth jwt: unrecognized subdirective %q", sub)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func plainDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	v, err := durationArg(d)
	if err != nil {
		return 0, err
	}
	return *v, nil
}

func oneArg(d *caddyfile.Dispenser) (string, error) {
	sub := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s: expected one value", sub)
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s: expected one value, got extra %q", sub, d.Val())
	}
	if d.NextBlock(d.Nesting()) {
		return "", d.Errf("%s: does not take a block", sub)
	}
	return v, nil
}

func durationArg(d *caddyfile.Dispenser) (*caddy.Duration, error) {
	sub := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return nil, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return nil, d.Errf("%s: invalid duration %q: expected e.g. 30s, 5m, 0 to turn off", sub, v)
	}
	if dur < 0 {
		return nil, d.Errf("%s: duration %q must not be negative", sub, v)
	}
	cd := caddy.Duration(dur)
	return &cd, nil
}

func intArg(d *caddyfile.Dispenser) (int, error) {
	sub := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, d.Errf("%s: invalid number %q: expected a whole number >= 0", sub, v)
	}
	return n, nil
}

func intPtrArg(d *caddyfile.Dispenser) (*int, error) {
	n, err := intArg(d)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// sizeOrZeroArg is a size where 0 turns the limit off.
func sizeOrZeroArg(d *caddyfile.Dispenser) (int64, error) {
	sub := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n > 1<<40 {
		return 0, d.Errf("%s: invalid size %q: expected bytes such as 64KiB, 256MiB or 0 (no limit)", sub, v)
	}
	return int64(n), nil
}

func sizeArg(d *caddyfile.Dispenser) (int, error) {
	sub := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > 1<<40 {
		return 0, d.Errf("%s: invalid size %q: expected bytes such as 1MiB, 512KB or 65536", sub, v)
	}
	return int(n), nil
}

func onOffArg(d *caddyfile.Dispenser) (bool, error) {
	sub := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return false, err
	}
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("%s: expected on or off, got %q", sub, v)
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)

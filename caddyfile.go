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
//		max_subscriptions <n>
//		max_topic_length  <n>
//		client_queue      <size>
//		wildcard          on|off
//		compress          on|off
//		cors_origins      <origin...>
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
			h.MaxClients, err = intArg(d)
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
		case "cors_origins":
			h.CORSOrigins = d.RemainingArgs()
			if len(h.CORSOrigins) == 0 {
				err = d.Errf("cors_origins: expected at least one origin, e.g. https://example.com or *")
			}
		default:
			return d.Errf("unrecognized realtime subdirective %q", sub)
		}
		if err != nil {
			return err
		}
	}
	return nil
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

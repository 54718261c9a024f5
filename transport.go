package realtime

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/caddy-realtime/realtime/broker"
	"github.com/caddy-realtime/realtime/natstransport"
)

func init() {
	caddy.RegisterModule(MemoryTransport{})
	caddy.RegisterModule(NATSTransport{})
}

// TransportModule is a module in the realtime.transports namespace: the
// configuration of what carries a broker's events. The realtime app builds
// the transport when a config that changed it commits.
type TransportModule interface {
	// NewTransport builds (without starting) a transport for broker that
	// keeps window of records, at most maxBytes, for resuming clients.
	NewTransport(broker string, window time.Duration, maxBytes int64, logger *zap.Logger) (broker.Transport, error)
}

// MemoryTransport keeps a broker's events in this process (the default): one
// node, and a replay log of resume_window / resume_bytes.
type MemoryTransport struct{}

// CaddyModule returns the Caddy module information.
func (MemoryTransport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "realtime.transports.memory",
		New: func() caddy.Module { return new(MemoryTransport) },
	}
}

// NewTransport returns an in-memory transport.
func (MemoryTransport) NewTransport(_ string, window time.Duration, maxBytes int64, _ *zap.Logger) (broker.Transport, error) {
	return broker.NewMemoryTransport(window, maxBytes), nil
}

// NATSTransport carries a broker's events on a NATS JetStream stream shared
// by every Caddy node configured with it: one order everywhere, publishes on
// any node, resume on any node. The stream keeps resume_window of records.
type NATSTransport struct {
	// URLs of the NATS servers (at least one).
	URLs []string `json:"urls,omitempty"`
	// Stream is the JetStream stream's name. Default: "realtime_" and the broker's name.
	Stream string `json:"stream,omitempty"`
	// Replicas of the stream. Default: 1.
	Replicas int `json:"replicas,omitempty"`
	// Storage is "file" or "memory". Default: file.
	Storage string `json:"storage,omitempty"`
	// MaxBytes caps the stream's size; the oldest records go first. Default: 0 (no cap).
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// Creds is a NATS credentials file (JWT and NKey).
	Creds string `json:"creds,omitempty"`
	// Token authenticates with a token.
	Token string `json:"token,omitempty"`
	// User and Password authenticate with a user name.
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	// TLS to the NATS servers: a CA file to trust, and a client certificate.
	TLS *NATSTLS `json:"tls,omitempty"`
}

// NATSTLS is the TLS configuration of a NATS connection.
type NATSTLS struct {
	CA   string `json:"ca,omitempty"`
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (NATSTransport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "realtime.transports.nats",
		New: func() caddy.Module { return new(NATSTransport) },
	}
}

// Validate checks the options.
func (n *NATSTransport) Validate() error {
	switch n.Storage {
	case "", "file", "memory":
	default:
		return fmt.Errorf("transport nats: storage must be file or memory, not %q", n.Storage)
	}
	if n.Replicas < 0 || n.Replicas > 5 {
		return fmt.Errorf("transport nats: replicas must be 1 to 5, not %d", n.Replicas)
	}
	if n.MaxBytes < 0 {
		return fmt.Errorf("transport nats: max_bytes must not be negative")
	}
	if len(n.URLs) == 0 {
		return fmt.Errorf("transport nats: expected at least one server URL, e.g. transport nats nats://127.0.0.1:4222")
	}
	for _, u := range n.URLs {
		if !strings.Contains(u, "://") {
			return fmt.Errorf("transport nats: %q is not a URL (nats://host:port)", u)
		}
	}
	if n.TLS != nil && (n.TLS.Cert == "") != (n.TLS.Key == "") {
		return fmt.Errorf("transport nats: tls needs both cert and key, or neither")
	}
	if n.Stream != "" && strings.ContainsAny(n.Stream, streamNameForbidden) {
		return fmt.Errorf("transport nats: stream name %q must not contain '.', '*', '>' or spaces", n.Stream)
	}
	_, err := n.options() // reads the credentials and TLS files: a missing one fails the load, not the start
	return err
}

// NewTransport returns a JetStream transport (connected when started).
func (n *NATSTransport) NewTransport(brokerName string, window time.Duration, maxBytes int64, logger *zap.Logger) (broker.Transport, error) {
	urls := n.URLs
	stream := n.Stream
	if stream == "" {
		stream = "realtime_" + sanitizeStreamName(brokerName)
	}
	opts, err := n.options()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return natstransport.New(natstransport.Config{
		URLs: urls, Stream: stream, Replicas: n.Replicas, Memory: n.Storage == "memory", MaxBytes: n.MaxBytes,
		Window: window, LogBytes: maxBytes, Options: opts, Name: "caddy-realtime " + host, Logger: logger,
	}), nil
}

// streamNameForbidden are the characters a JetStream stream name cannot hold.
const streamNameForbidden = ".*> \t"

func sanitizeStreamName(s string) string {
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune(streamNameForbidden, r) {
			return '_'
		}
		return r
	}, s)
}

func (n *NATSTransport) options() ([]nats.Option, error) {
	var opts []nats.Option
	if n.Creds != "" {
		opts = append(opts, nats.UserCredentials(n.Creds))
	}
	if n.Token != "" {
		opts = append(opts, nats.Token(n.Token))
	}
	if n.User != "" {
		opts = append(opts, nats.UserInfo(n.User, n.Password))
	}
	if n.TLS != nil {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if n.TLS.CA != "" {
			pem, err := os.ReadFile(n.TLS.CA)
			if err != nil {
				return nil, fmt.Errorf("transport nats: tls ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("transport nats: tls ca %s holds no PEM certificate", n.TLS.CA)
			}
			cfg.RootCAs = pool
		}
		if n.TLS.Cert != "" {
			cert, err := tls.LoadX509KeyPair(n.TLS.Cert, n.TLS.Key)
			if err != nil {
				return nil, fmt.Errorf("transport nats: tls cert/key: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// unmarshalTransport reads `transport memory` or
//
//	transport nats [<url...>] {
//		stream   <name>
//		replicas <n>
//		storage  file|memory
//		max_bytes <size>
//		creds    <file>
//		token    <token>
//		user     <name> <password>
//		tls {
//			ca   <file>
//			cert <file>
//			key  <file>
//		}
//	}
func (h *Handler) unmarshalTransport(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Errf("transport: expected memory or nats")
	}
	var mod caddy.Module
	switch d.Val() {
	case "memory":
		if d.NextArg() {
			return d.Errf("transport memory: unexpected argument %q", d.Val())
		}
		mod = MemoryTransport{}
	case "nats":
		n := &NATSTransport{URLs: d.RemainingArgs()}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			sub := d.Val()
			var err error
			switch sub {
			case "stream":
				n.Stream, err = oneArg(d)
			case "replicas":
				n.Replicas, err = intArg(d)
			case "storage":
				n.Storage, err = oneArg(d)
			case "max_bytes":
				n.MaxBytes, err = sizeOrZeroArg(d)
			case "creds":
				n.Creds, err = oneArg(d)
			case "token":
				n.Token, err = oneArg(d)
			case "user":
				args := d.RemainingArgs()
				if len(args) != 2 {
					return d.Errf("transport nats: user: expected a name and a password")
				}
				n.User, n.Password = args[0], args[1]
			case "tls":
				n.TLS = &NATSTLS{}
				for tn := d.Nesting(); d.NextBlock(tn); {
					key := d.Val()
					var v string
					if v, err = oneArg(d); err != nil {
						return err
					}
					switch key {
					case "ca":
						n.TLS.CA = v
					case "cert":
						n.TLS.Cert = v
					case "key":
						n.TLS.Key = v
					default:
						return d.Errf("transport nats: tls: unrecognized %q (expected ca, cert or key)", key)
					}
				}
			default:
				return d.Errf("transport nats: unrecognized subdirective %q", sub)
			}
			if err != nil {
				return err
			}
		}
		mod = n
	default:
		return d.Errf("transport: unknown transport %q (expected memory or nats)", d.Val())
	}
	h.TransportRaw = caddyconfig.JSONModuleObject(mod, "protocol", strings.TrimPrefix(string(mod.CaddyModule().ID), "realtime.transports."), nil)
	return nil
}

// transportKey identifies a transport configuration: a reload that keeps it
// keeps the running transport (and its connections).
func transportKey(raw json.RawMessage) string {
	if len(raw) == 0 {
		return `{"protocol":"memory"}`
	}
	return string(raw)
}

// Interface guards
var (
	_ TransportModule = MemoryTransport{}
	_ TransportModule = (*NATSTransport)(nil)
	_ caddy.Validator = (*NATSTransport)(nil)
)

package realtime

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"

	"github.com/caddy-realtime/realtime/admin"
	"github.com/caddy-realtime/realtime/auth"
	"github.com/caddy-realtime/realtime/broker"
	"github.com/caddy-realtime/realtime/handler"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App is the commit point of a config load. Handlers register their broker's
// policy (limits, rules, auth) with the App of their own config in Provision;
// Start swaps every policy into its broker at once. A load that fails never
// reaches Start (or is stopped right after it), so a refused config changes
// nothing that running streams see. It needs no configuration: handlers load it.
type App struct {
	mu        sync.Mutex
	brokers   map[string]*brokerPolicy
	committed bool // the whole config started ("started" event)
	logger    *zap.Logger
}

// brokerPolicy is what one config wants for one broker.
type brokerPolicy struct {
	broker  *broker.Broker
	policy  *broker.Policy
	access  *accessState
	options string // the handler's broker-wide options as JSON, to compare handlers
	prev    *broker.Policy
	prevAcc any

	transport    TransportModule
	transportKey string
	endpoint     *handler.Handler  // serves subscription POSTs forwarded by other nodes
	prevTrans    *runningTransport // set when Start replaced the transport
}

// runningTransport is the configuration of a broker's current transport.
type runningTransport struct {
	key string
	mod TransportModule
}

// transports holds each broker's runningTransport; a broker without an
// entry runs the in-memory transport it was created with.
var transports sync.Map // broker name -> *runningTransport

func currentTransport(name string) *runningTransport {
	if v, ok := transports.Load(name); ok {
		return v.(*runningTransport)
	}
	return &runningTransport{key: transportKey(nil), mod: MemoryTransport{}}
}

// switchTransport gives b a new transport built from rt, unless it runs that one already.
func switchTransport(name string, b *broker.Broker, rt *runningTransport, logger *zap.Logger) (bool, error) {
	if currentTransport(name).key == rt.key {
		return false, nil
	}
	p := b.Policy()
	t, err := rt.mod.NewTransport(name, p.ResumeWindow, p.ResumeBytes, logger)
	if err != nil {
		return false, err
	}
	if err := b.UseTransport(t); err != nil {
		return true, err
	}
	transports.Store(name, rt)
	logger.Info("realtime transport changed", zap.String("broker", name), zap.String("transport", rt.key))
	return true, nil
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "realtime",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision subscribes to the "started" event, which says the whole config
// (every app) started: from then on Stop leaves policies alone.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.brokers = map[string]*brokerPolicy{}
	events, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading events app: %w", err)
	}
	return events.(*caddyevents.App).On("started", startedHandler{a})
}

type startedHandler struct{ app *App }

func (s startedHandler) Handle(context.Context, caddy.Event) error {
	s.app.mu.Lock()
	s.app.committed = true
	s.app.mu.Unlock()
	return nil
}

// brokerOptions are a handler's options that belong to its broker, as JSON:
// every handler naming one broker must agree on them. They are the handler's
// whole config but for the per-endpoint options, so a new broker option is
// compared without being listed here.
func (h *Handler) brokerOptions() string {
	o := *h
	o.Broker, o.BodyTimeout, o.Compress, o.Hijack, o.CORSOrigins = "", nil, false, nil, nil
	b, _ := json.Marshal(&o)
	return string(b)
}

// register records the policy a handler wants for its broker. A second
// handler of the same broker must want the same: it gets the first one's
// policy back (and shares its auth cache). Disagreeing handlers fail the load.
func (a *App) register(name string, want *brokerPolicy) (*brokerPolicy, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	have, ok := a.brokers[name]
	if !ok {
		a.brokers[name] = want
		return want, nil
	}
	if have.options != want.options {
		return nil, fmt.Errorf("two realtime handlers use broker %q with different options (%s): "+
			"a broker has one policy, so give both the same options or different broker names",
			name, optionsDiff(have.options, want.options))
	}
	return have, nil
}

// optionsDiff names the options two handlers disagree on, with both values.
func optionsDiff(x, y string) string {
	var a, b map[string]json.RawMessage
	_ = json.Unmarshal([]byte(x), &a)
	_ = json.Unmarshal([]byte(y), &b)
	show := func(v json.RawMessage) string {
		if v == nil {
			return "unset"
		}
		return string(v)
	}
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := ""
	for _, k := range keys {
		if string(a[k]) != string(b[k]) {
			if out != "" {
				out += "; "
			}
			out += fmt.Sprintf("%s: %s in one, %s in the other", k, show(a[k]), show(b[k]))
		}
	}
	return out
}

// Start puts this config's policies in force, all at once.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, bp := range a.brokers {
		bp.prev = bp.broker.Policy()
		bp.prevAcc, _ = accessStats.Load(name)
		bp.broker.SetPolicy(bp.policy)
		accessStats.Store(name, bp.access)
		logRules(a.logger, name, bp.access.rules)
		b := bp.broker
		if bp.endpoint != nil {
			b.HandleForwarded(handler.KindSubscribe, bp.endpoint.ServeForwarded)
		}
		b.HandleForwarded(admin.KindAdmin, func(_ *broker.Client, payload []byte) []byte { return admin.ServeForwarded(b, payload) })
		prev := currentTransport(name)
		switched, err := switchTransport(name, bp.broker, &runningTransport{key: bp.transportKey, mod: bp.transport}, a.logger)
		if switched {
			bp.prevTrans = prev
		}
		if err != nil {
			return fmt.Errorf("broker %q: starting its transport: %w", name, err)
		}
		b.SetClusterConfig(bp.options)
	}
	return nil
}

// Stop undoes Start only when this config never finished starting (another
// app failed after ours started): the previous config keeps running, so its
// policy comes back. A config replaced by a newer one, or unloaded, touches nothing.
func (a *App) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.committed {
		return nil
	}
	for name, bp := range a.brokers {
		if bp.prevTrans != nil {
			if _, err := switchTransport(name, bp.broker, bp.prevTrans, a.logger); err != nil {
				a.logger.Error("restoring the previous transport", zap.String("broker", name), zap.Error(err))
			}
			bp.prevTrans = nil
		}
		if bp.prev == nil || !bp.broker.SwapPolicy(bp.policy, bp.prev) {
			continue
		}
		if bp.prevAcc != nil {
			accessStats.CompareAndSwap(name, bp.access, bp.prevAcc)
		} else {
			accessStats.CompareAndDelete(name, bp.access)
		}
	}
	return nil
}

// accessState is the auth and rule state of one broker's policy, for metrics
// and for handlers that share it.
type accessState struct {
	authn *auth.Authenticator // nil without auth
	rules *broker.RuleSet
}

// accessStats are the auth and rule counters of each broker's current config, for metrics.
var accessStats sync.Map // broker name -> *accessState

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)

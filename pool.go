package realtime

import (
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-realtime/realtime/broker"
)

// DefaultBroker is the broker an endpoint joins when none is named.
const DefaultBroker = "default"

// brokers holds every broker by name. Each realtime handler takes a reference
// in Provision and drops it in Cleanup, so a broker and its open streams
// survive config reloads and go away when no config uses them.
var brokers = caddy.NewUsagePool()

type pooledBroker struct{ *broker.Broker }

// Destruct runs when the last config using the broker is unloaded.
func (p pooledBroker) Destruct() error {
	p.Close()
	transports.Delete(p.Name())
	return nil
}

func acquireBroker(name string) (*broker.Broker, error) {
	v, _, err := brokers.LoadOrNew(name, func() (caddy.Destructor, error) {
		// Nothing is allowed until a config commits its policy (App.Start).
		p := broker.DefaultPolicy()
		p.Access = broker.DenyAll
		return pooledBroker{broker.New(name, p)}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(pooledBroker).Broker, nil
}

// lookupBroker finds a live broker without taking a reference (admin API).
func lookupBroker(name string) (*broker.Broker, bool) {
	if name == "" {
		name = DefaultBroker
	}
	var found *broker.Broker
	brokers.Range(func(key, value any) bool {
		if key == name {
			found = value.(pooledBroker).Broker
			return false
		}
		return true
	})
	return found, found != nil
}

func allBrokers() []*broker.Broker {
	var out []*broker.Broker
	brokers.Range(func(_, value any) bool {
		out = append(out, value.(pooledBroker).Broker)
		return true
	})
	return out
}

// closeAllStreams ends every stream at process exit and waits briefly for the
// broker's writers to close the connections they own.
func closeAllStreams() {
	all := allBrokers()
	for _, b := range all {
		b.CloseAll(broker.ReasonShutdown)
	}
	for _, b := range all {
		b.WaitAdopted(time.Second)
	}
}

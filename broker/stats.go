package broker

import (
	"sync/atomic"
	"time"
)

type stats struct {
	connects      atomic.Uint64
	subscriptions atomic.Int64
	eventsIn      atomic.Uint64
	messagesIn    atomic.Uint64
	messagesOut   atomic.Uint64
	bytesOut      atomic.Uint64
	evictions     [len(EvictionReasons)]atomic.Uint64
	refused       [len(Budgets)]atomic.Uint64
	fanout        histogram
}

func (s *stats) evict(reason string) {
	for i, r := range EvictionReasons {
		if r == reason {
			s.evictions[i].Add(1)
		}
	}
}

// FanoutBuckets are the upper bounds, in seconds, of the fan-out latency histogram.
var FanoutBuckets = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// histogram is a lock-free fixed-bucket histogram, exported as Prometheus' shape by the caller.
type histogram struct {
	counts [len(FanoutBuckets)]atomic.Uint64 // non-cumulative
	count  atomic.Uint64
	sumNs  atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	sec := d.Seconds()
	for i, le := range FanoutBuckets {
		if sec <= le {
			h.counts[i].Add(1)
			break
		}
	}
	h.count.Add(1)
	h.sumNs.Add(uint64(d))
}

// Stats is a snapshot of a broker's counters.
type Stats struct {
	Broker        string `json:"broker"`
	Clients       int64  `json:"clients"`
	Subscriptions int64  `json:"subscriptions"`
	// QueuedBytes is what max_queued_bytes counts: the memory frames waiting
	// for clients hold (each client's own bytes, each shared frame once).
	QueuedBytes int64             `json:"queued_bytes"`
	Connects    uint64            `json:"connects"`
	EventsIn    uint64            `json:"events_in"`
	MessagesIn  uint64            `json:"messages_in"`
	MessagesOut uint64            `json:"messages_out"`
	BytesOut    uint64            `json:"bytes_out"`
	Evictions   map[string]uint64 `json:"evictions"`
	Refused     map[string]uint64 `json:"refused"` // requests refused by a budget, by its name
	Fanout      FanoutStats       `json:"fanout"`
	// SkippedRecords counts records the transport held but this node could
	// not read (a NATS message that does not decode): logged and skipped.
	SkippedRecords uint64 `json:"skipped_records,omitempty"`
}

// FanoutStats is the fan-out latency histogram: Buckets[i] counts fan-outs
// taking at most FanoutBuckets[i] seconds (cumulative, as Prometheus expects).
type FanoutStats struct {
	Count      uint64             `json:"count"`
	SumSeconds float64            `json:"sum_seconds"`
	Buckets    map[float64]uint64 `json:"-"`
}

// Stats returns a snapshot of the broker's counters.
func (b *Broker) Stats() Stats {
	s := &b.stats
	out := Stats{
		Broker:        b.name,
		Clients:       b.nClients.Load(),
		Subscriptions: s.subscriptions.Load(),
		QueuedBytes:   b.queuedBytes(),
		Connects:      s.connects.Load(),
		EventsIn:      s.eventsIn.Load(),
		MessagesIn:    s.messagesIn.Load(),
		MessagesOut:   s.messagesOut.Load(),
		BytesOut:      s.bytesOut.Load(),
		Evictions:     make(map[string]uint64, len(EvictionReasons)),
		Refused:       make(map[string]uint64, len(Budgets)),
		Fanout: FanoutStats{
			Count:      s.fanout.count.Load(),
			SumSeconds: time.Duration(s.fanout.sumNs.Load()).Seconds(),
			Buckets:    make(map[float64]uint64, len(FanoutBuckets)),
		},
	}
	if sk, ok := b.Transport().(interface{ Skipped() uint64 }); ok {
		out.SkippedRecords = sk.Skipped()
	}
	for i, r := range EvictionReasons {
		out.Evictions[r] = s.evictions[i].Load()
	}
	for i, r := range Budgets {
		out.Refused[r] = s.refused[i].Load()
	}
	var cum uint64
	for i, le := range FanoutBuckets {
		cum += s.fanout.counts[i].Load()
		out.Fanout.Buckets[le] = cum
	}
	return out
}

package broker

import (
	"context"
	"sync"
	"time"
)

// MemoryTransport is the default Transport: one process, each record
// delivered as it is published, and a log of the last window of them.
type MemoryTransport struct {
	epoch string
	log   *ReplayLog

	// mu serializes Publish: positions are given and records delivered in one order.
	mu      sync.Mutex
	deliver func(*Record)
	last    uint64
	seen    map[string]struct{} // recent idempotency keys
	seenLog []string            // ring of the same keys, oldest first
	seenPos int
}

// idempotencyWindow is how many recent event ids are remembered for dedupe.
const idempotencyWindow = 10000

// NewMemoryTransport returns a transport with a new epoch that keeps window
// of records (at most maxBytes) for resuming clients.
func NewMemoryTransport(window time.Duration, maxBytes int64) *MemoryTransport {
	return &MemoryTransport{
		epoch:   newClientID()[:epochLen],
		log:     NewReplayLog(window, maxBytes),
		deliver: func(*Record) {},
		seen:    make(map[string]struct{}),
		seenLog: make([]string, idempotencyWindow),
	}
}

// Start sets where published records go; a new memory transport is a new
// order, so from does not matter.
func (t *MemoryTransport) Start(deliver func(*Record), _ Position) error {
	t.mu.Lock()
	t.deliver = deliver
	t.mu.Unlock()
	return nil
}

// Epoch names the transport's order.
func (t *MemoryTransport) Epoch() string { return t.epoch }

// SetLimits changes what the log keeps; the order and its epoch stay.
func (t *MemoryTransport) SetLimits(window time.Duration, maxBytes int64) {
	t.log.SetLimits(window, maxBytes)
}

// Publish positions, logs and delivers each new record, in order.
func (t *MemoryTransport) Publish(_ context.Context, recs []*Record) (uint64, int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	published := 0
	for _, r := range recs {
		if r.Event != nil && r.Event.ID != "" && !t.remember(r.Event.ID) {
			continue
		}
		t.last++
		r.Position = t.last
		t.log.Append(r)
		t.deliver(r)
		published++
	}
	return t.last, published, nil
}

// remember records an idempotency id; false means it was seen recently.
func (t *MemoryTransport) remember(id string) bool {
	if _, dup := t.seen[id]; dup {
		return false
	}
	if old := t.seenLog[t.seenPos]; old != "" {
		delete(t.seen, old)
	}
	t.seenLog[t.seenPos] = id
	t.seenPos = (t.seenPos + 1) % len(t.seenLog)
	t.seen[id] = struct{}{}
	return true
}

// ReadFrom calls fn with the records after position, in order.
func (t *MemoryTransport) ReadFrom(epoch string, position uint64, fn func(*Record) bool) bool {
	return epoch == t.epoch && t.log.ReadFrom(position, fn)
}

// Last is the position of the last record published.
func (t *MemoryTransport) Last() uint64 { return t.log.Last() }

// Held reports how many records the log keeps and their estimated bytes.
func (t *MemoryTransport) Held() (records int, bytes int64) { return t.log.Held() }

// Close does nothing: the log goes with the transport.
func (t *MemoryTransport) Close() error { return nil }

var _ Transport = (*MemoryTransport)(nil)

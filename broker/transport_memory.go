package broker

import (
	"sync"
	"time"
)

// MemoryTransport is the default Transport: one process, delivery as Publish
// is called, and a log of the last window of records capped at maxBytes.
type MemoryTransport struct {
	epoch   string
	deliver func(*Record)

	mu       sync.Mutex
	window   time.Duration // 0: keep nothing
	maxBytes int64
	last     uint64    // position of the last record published
	log      []*Record // oldest first, from head
	sizes    []int64   // estimated bytes held by each record of log
	head     int
	bytes    int64
}

// recordOverhead estimates the memory a logged record holds besides its payload.
const recordOverhead = 256

// NewMemoryTransport returns a transport with a new epoch that hands every
// published record to deliver and keeps window of them (at most maxBytes).
func NewMemoryTransport(window time.Duration, maxBytes int64, deliver func(*Record)) *MemoryTransport {
	return &MemoryTransport{epoch: newClientID()[:epochLen], deliver: deliver, window: window, maxBytes: maxBytes}
}

// Epoch names the transport's order.
func (t *MemoryTransport) Epoch() string { return t.epoch }

// SetLimits changes what the log keeps (a config reload); the order and its
// epoch stay.
func (t *MemoryTransport) SetLimits(window time.Duration, maxBytes int64) {
	t.mu.Lock()
	t.window, t.maxBytes = window, maxBytes
	t.pruneLocked(time.Now())
	t.mu.Unlock()
}

// Publish positions r, logs it and delivers it.
func (t *MemoryTransport) Publish(r *Record) {
	t.mu.Lock()
	t.last++
	r.Position = t.last
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	if t.window > 0 {
		t.log = append(t.log, r)
		size := recordSize(r)
		t.sizes = append(t.sizes, size)
		t.bytes += size
	}
	t.pruneLocked(r.Time)
	t.mu.Unlock()
	t.deliver(r)
}

// recordSize estimates what a logged record keeps alive: its encoded record
// (and the payloads fan-out derived from it) or its message.
func recordSize(r *Record) int64 {
	n := int64(recordOverhead)
	if ev := r.Event; ev != nil {
		n += 2 * int64(len(ev.recordJSON))
	}
	if m := r.Message; m != nil {
		n += int64(len(m.Name) + len(m.Data))
		for _, id := range m.Clients {
			n += int64(len(id)) + 16
		}
	}
	return n
}

func (t *MemoryTransport) pruneLocked(now time.Time) {
	for t.head < len(t.log) {
		if t.window > 0 && now.Sub(t.log[t.head].Time) <= t.window && (t.maxBytes <= 0 || t.bytes <= t.maxBytes) {
			break
		}
		t.bytes -= t.sizes[t.head]
		t.log[t.head] = nil
		t.head++
	}
	if t.head == len(t.log) {
		t.log, t.sizes, t.head = t.log[:0], t.sizes[:0], 0
	} else if t.head > 1024 && t.head > len(t.log)/2 {
		n := copy(t.log, t.log[t.head:])
		clear(t.log[n:])
		t.log = t.log[:n]
		t.sizes = t.sizes[:copy(t.sizes, t.sizes[t.head:])]
		t.head = 0
	}
}

// ReadFrom calls fn with the records after position, in order.
func (t *MemoryTransport) ReadFrom(epoch string, position uint64, fn func(*Record) bool) bool {
	if epoch != t.epoch {
		return false
	}
	t.mu.Lock()
	t.pruneLocked(time.Now())
	if position > t.last {
		t.mu.Unlock()
		return false
	}
	var held []*Record
	if position < t.last {
		live := t.log[t.head:]
		if len(live) == 0 || live[0].Position > position+1 {
			t.mu.Unlock()
			return false // some records after position were dropped
		}
		// A copy: pruning compacts the log in place once the lock is released.
		held = append([]*Record(nil), live[position+1-live[0].Position:]...)
	}
	t.mu.Unlock()
	for _, r := range held {
		if !fn(r) {
			break
		}
	}
	return true
}

// Last is the position of the last record published.
func (t *MemoryTransport) Last() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// Held reports how many records the log keeps and their estimated bytes.
func (t *MemoryTransport) Held() (records int, bytes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.log) - t.head, t.bytes
}

var _ Transport = (*MemoryTransport)(nil)

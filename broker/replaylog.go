package broker

import (
	"sync"
	"time"
)

// ReplayLog keeps the recent records of one order for resuming clients: the
// last window of them, at most maxBytes (an estimate). Every transport keeps
// one of what it delivered, so a resume is served from memory.
type ReplayLog struct {
	mu       sync.Mutex
	window   time.Duration // 0: keep nothing
	maxBytes int64         // 0: no cap
	last     uint64        // position of the last record appended
	log      []*Record     // oldest first, from head
	sizes    []int64       // estimated bytes held by each record of log
	head     int
	bytes    int64
}

// recordOverhead estimates the memory a logged record holds besides its payload.
const recordOverhead = 256

// NewReplayLog returns a log that keeps window of records, at most maxBytes.
func NewReplayLog(window time.Duration, maxBytes int64) *ReplayLog {
	return &ReplayLog{window: window, maxBytes: maxBytes}
}

// SetLimits changes what the log keeps (a config reload).
func (l *ReplayLog) SetLimits(window time.Duration, maxBytes int64) {
	l.mu.Lock()
	l.window, l.maxBytes = window, maxBytes
	l.pruneLocked(time.Now())
	l.mu.Unlock()
}

// Append logs r, whose position must follow the last one appended (or start
// the log over when it does not: what was held can no longer be served).
func (l *ReplayLog) Append(r *Record) {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	l.mu.Lock()
	if r.Position != l.last+1 {
		clear(l.log)
		l.log, l.sizes, l.head, l.bytes = l.log[:0], l.sizes[:0], 0, 0
	}
	l.last = r.Position
	if l.window > 0 {
		l.log = append(l.log, r)
		size := recordSize(r)
		l.sizes = append(l.sizes, size)
		l.bytes += size
	}
	l.pruneLocked(r.Time)
	l.mu.Unlock()
}

// Reset forgets everything and continues after position last (a new epoch
// starts from 0).
func (l *ReplayLog) Reset(last uint64) {
	l.mu.Lock()
	clear(l.log)
	l.log, l.sizes, l.head, l.bytes, l.last = l.log[:0], l.sizes[:0], 0, 0, last
	l.mu.Unlock()
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

func (l *ReplayLog) pruneLocked(now time.Time) {
	for l.head < len(l.log) {
		if l.window > 0 && now.Sub(l.log[l.head].Time) <= l.window && (l.maxBytes <= 0 || l.bytes <= l.maxBytes) {
			break
		}
		l.bytes -= l.sizes[l.head]
		l.log[l.head] = nil
		l.head++
	}
	if l.head == len(l.log) {
		l.log, l.sizes, l.head = l.log[:0], l.sizes[:0], 0
	} else if l.head > 1024 && l.head > len(l.log)/2 {
		n := copy(l.log, l.log[l.head:])
		clear(l.log[n:])
		l.log = l.log[:n]
		l.sizes = l.sizes[:copy(l.sizes, l.sizes[l.head:])]
		l.head = 0
	}
}

// ReadFrom calls fn with the records after position, in order, until fn
// returns false. It reports false, calling fn for nothing, when they are not
// all held (older than the log, or a position not reached yet).
func (l *ReplayLog) ReadFrom(position uint64, fn func(*Record) bool) bool {
	l.mu.Lock()
	l.pruneLocked(time.Now())
	if position > l.last {
		l.mu.Unlock()
		return false
	}
	var held []*Record
	if position < l.last {
		live := l.log[l.head:]
		if len(live) == 0 || live[0].Position > position+1 {
			l.mu.Unlock()
			return false // some records after position were dropped
		}
		// A copy: pruning compacts the log in place once the lock is released.
		held = append([]*Record(nil), live[position+1-live[0].Position:]...)
	}
	l.mu.Unlock()
	for _, r := range held {
		if !fn(r) {
			break
		}
	}
	return true
}

// Last is the position of the last record appended.
func (l *ReplayLog) Last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// Held reports how many records the log keeps and their estimated bytes.
func (l *ReplayLog) Held() (records int, bytes int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.log) - l.head, l.bytes
}

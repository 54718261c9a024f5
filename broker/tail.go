package broker

import "sync/atomic"

// sharedTail is a frame's tail ("event:...\ndata:...\n\n"), made once per
// event and view and queued by reference in every receiving client's queue.
// Its bytes count once against max_queued_bytes while any queue holds it,
// however many clients it was queued for: that is the memory it costs.
//
// Its creator hands it out (give, from the creator's goroutine only) and
// then calls done; every holder releases its reference once (release, from
// any goroutine). Until done, refs carries holdBias, so releases racing
// the hand-out never see it unheld.
type sharedTail struct {
	b     []byte
	refs  atomic.Int64
	given int64         // references handed out by the creator
	held  *atomic.Int64 // the broker's bytes of tails held; nil: not counted
}

const holdBias = 1 << 40

// newTail wraps b (never changed afterwards) for handing out; a tail short
// enough to be copied into each queue is not counted as shared.
func (b *Broker) newTail(p []byte) *sharedTail {
	t := &sharedTail{b: p}
	if len(p) >= sharedMin {
		t.held = &b.heldShared
		t.refs.Store(holdBias)
		t.held.Add(int64(len(p)))
	}
	return t
}

// ownTail wraps a tail that is always copied (PB_CONNECT and the like).
func ownTail(p []byte) *sharedTail { return &sharedTail{b: p} }

// counted is whether queues hold t by reference (and release it).
func (t *sharedTail) counted() bool { return t.held != nil }

// give counts one more holder; the creator's goroutine only.
func (t *sharedTail) give() {
	if t.held != nil {
		t.given++
	}
}

// done ends the hand-out: the creator's hold goes.
func (t *sharedTail) done() {
	if t.held != nil && t.refs.Add(t.given-holdBias) == 0 {
		t.held.Add(-int64(len(t.b)))
	}
}

// release drops one holder's reference.
func (t *sharedTail) release() {
	if t.held != nil && t.refs.Add(-1) == 0 {
		t.held.Add(-int64(len(t.b)))
	}
}

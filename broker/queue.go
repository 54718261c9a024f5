package broker

// frameQueue is a client's pending bytes. The frame tails that every
// subscriber of an event shares ("event:...\ndata:...\n\n") are referenced,
// not copied; only the client's own bytes (its id line, HTTP chunk framing,
// heartbeats) are stored in it. Bytes are copied when the client's writer
// takes them, so a client that does not read costs a reference per frame
// rather than a copy of every record (3,000 stalled streams of 20 KB events
// would otherwise copy 60 MB per event). Writers send the pieces as they are
// (slices, consume): a batch that a stalled socket does not take is never
// copied either.
type frameQueue struct {
	own    []byte
	pieces []piece
	n      int // bytes queued
	shared int // of which in shared tails
}

// piece is shared.b[off:end], or own[off:end] when shared is nil.
type piece struct {
	shared   *sharedTail
	off, end int
}

// sharedMin is the smallest tail worth referencing instead of copying.
const sharedMin = 256

// Len is the number of bytes queued.
func (q *frameQueue) Len() int { return q.n }

// grewOwn records own[start:] (just appended) as queued.
func (q *frameQueue) grewOwn(start int) {
	end := len(q.own)
	if end == start {
		return
	}
	q.n += end - start
	if k := len(q.pieces) - 1; k >= 0 && q.pieces[k].shared == nil && q.pieces[k].end == start {
		q.pieces[k].end = end
		return
	}
	q.pieces = append(q.pieces, piece{off: start, end: end})
}

func (q *frameQueue) appendOwn(b []byte) {
	start := len(q.own)
	q.own = append(q.own, b...)
	q.grewOwn(start)
}

func (q *frameQueue) appendOwnString(s string) {
	start := len(q.own)
	q.own = append(q.own, s...)
	q.grewOwn(start)
}

// appendShared queues t without copying it, taking a reference its creator
// handed out (give) unless given says the caller already holds one for the
// queue; a tail too short to be worth it is copied.
func (q *frameQueue) appendShared(t *sharedTail, given bool) {
	if !t.counted() {
		q.appendOwn(t.b)
		return
	}
	if !given {
		t.give()
	}
	q.n += len(t.b)
	q.shared += len(t.b)
	q.pieces = append(q.pieces, piece{shared: t, end: len(t.b)})
}

func (p *piece) bytes(own []byte) []byte {
	if p.shared != nil {
		return p.shared.b[p.off:p.end]
	}
	return own[p.off:p.end]
}

// slices appends the queued bytes to dst as slices of the queue's own memory,
// no copy: at most maxPieces slices and, unless the first piece is larger,
// at most maxBytes. They stay valid until the queue is changed.
func (q *frameQueue) slices(dst [][]byte, maxPieces, maxBytes int) [][]byte {
	total := 0
	for i := range q.pieces {
		b := q.pieces[i].bytes(q.own)
		if i == maxPieces || (i > 0 && total+len(b) > maxBytes) {
			break
		}
		dst = append(dst, b)
		total += len(b)
	}
	return dst
}

// consume drops the first n queued bytes (what a writer sent), releasing the
// shared tails it has passed.
func (q *frameQueue) consume(n int) {
	q.n -= n
	for n > 0 {
		p := &q.pieces[0]
		size := len(p.bytes(q.own))
		if n < size {
			p.off += n
			if p.shared != nil {
				q.shared -= n
			}
			break
		}
		n -= size
		if p.shared != nil {
			q.shared -= size
			p.shared.release()
		}
		*p = piece{}
		q.pieces = q.pieces[1:]
	}
	if q.n == 0 {
		q.reset()
	}
}

// take appends everything queued to dst and empties the queue.
func (q *frameQueue) take(dst []byte) []byte {
	dst = q.appendTo(dst)
	q.reset()
	return dst
}

// appendTo appends everything queued to dst, leaving the queue as it is.
func (q *frameQueue) appendTo(dst []byte) []byte {
	if q.n == 0 {
		return dst
	}
	if cap(dst)-len(dst) < q.n {
		grown := make([]byte, len(dst), len(dst)+q.n)
		copy(grown, dst)
		dst = grown
	}
	for i := range q.pieces {
		dst = append(dst, q.pieces[i].bytes(q.own)...)
	}
	return dst
}

// reset empties the queue, dropping references to shared tails and buffers
// grown by a burst.
func (q *frameQueue) reset() {
	q.release()
	clear(q.pieces)
	q.pieces, q.own, q.n, q.shared = q.pieces[:0], q.own[:0], 0, 0
	if cap(q.own) > maxRetainedBuffer {
		q.own = nil
	}
	if cap(q.pieces) > maxRetainedBuffer/32 {
		q.pieces = nil
	}
}

// free drops everything, buffers included.
func (q *frameQueue) free() {
	q.release()
	*q = frameQueue{}
}

// release lets go of the shared tails still queued.
func (q *frameQueue) release() {
	if q.shared == 0 {
		return
	}
	for i := range q.pieces {
		if t := q.pieces[i].shared; t != nil {
			t.release()
		}
	}
}

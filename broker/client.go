package broker

import (
	"context"
	"crypto/rand"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Stream is where a client's frames go: an HTTP response (handler package) or any writer.
type Stream interface {
	Write(p []byte) (int, error)
	Flush() error
	SetWriteDeadline(t time.Time) error
}

// Client is one SSE connection. Its frames are appended to a byte-bounded queue
// by publishers and written, all pending at once, by the single goroutine in Serve.
type Client struct {
	id        string
	ip        string
	broker    *Broker
	connected time.Time
	since     uint64 // where a resume replays from if PB_CONNECT is the last frame it gets: the log's end when it connected, or where its own resume replayed from

	mu       sync.Mutex
	queue    frameQueue
	frames   uint64 // frames in queue
	unsent   int    // bytes taken from queue by an adopted connection's writer, not yet written
	inflight int    // bytes Serve took from queue and is writing
	// batchShared is how much of unsent or inflight is in shared tails.
	batchShared int
	// refusedAt is when an adopted connection's socket last refused bytes
	// after accepting none (UnixNano; 0 while it takes what it is given).
	refusedAt int64
	closed    bool
	reason    string
	wake      chan struct{} // capacity 1: "the queue is not empty"
	done      chan struct{} // closed when the client is closed
	conn      *connState    // set when the broker writes to an adopted connection
	// closeHook runs (with mu held) when the client is closed: Serve's writeGuard.
	closeHook func()

	subsMu sync.Mutex
	subs   map[string]*topicSubs // full topic string -> index entry

	authMu sync.Mutex // serializes auth changes (POSTs, auth record events)
	// recheckPending is the auth an event dropped while its credentials are
	// looked up again (see recheckAuth); guarded by authMu.
	recheckPending *Auth
	// replayUntil, while a resume replays outside pubMu, is the last
	// replayed position: later (live) frames wait in afterReplay. Guarded by mu.
	replayUntil uint64
	afterReplay []replayedLive
	// replayedTo is the last position a resume's replay queued (or, with
	// nothing to replay, the one the client resumed from), in epoch
	// replayedEpoch. A live frame at or before it is dropped: a transport
	// logs a record before it delivers it, so a resume reading the log in
	// between replays a record (or resumes after one) whose live delivery is
	// still to come, and the client is subscribed by then. Guarded by mu.
	replayedTo    uint64
	replayedEpoch string
	// sharedAt is when its session was last stored in the cluster (UnixNano; 0: never).
	sharedAt atomic.Int64
	auth     atomic.Pointer[authState]
	state    sync.Map

	// writingSince is when the blocking write in progress (Serve's, or an
	// adopted TLS connection's) started, in unix nanoseconds; 0: none.
	writingSince atomic.Int64

	delivered atomic.Uint64 // messages written to the stream
	bytesOut  atomic.Uint64
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newClientID returns 40 crypto-random characters of [A-Za-z0-9], like PocketBase.
func newClientID() string {
	var raw [40]byte
	var out [40]byte
	for filled := 0; filled < len(out); {
		_, _ = rand.Read(raw[:])
		for _, b := range raw {
			if b >= 248 { // 248 = 4*62: reject to keep the distribution uniform
				continue
			}
			out[filled] = idAlphabet[int(b)%len(idAlphabet)]
			filled++
			if filled == len(out) {
				break
			}
		}
	}
	return string(out[:])
}

// ID is the client id sent in PB_CONNECT.
func (c *Client) ID() string { return c.id }

// IP is the client address the stream came from; subscription POSTs must match it.
func (c *Client) IP() string { return c.ip }

// ConnectedAt is when the stream opened.
func (c *Client) ConnectedAt() time.Time { return c.connected }

// Get returns a value from the client's free-form state.
func (c *Client) Get(key string) (any, bool) { return c.state.Load(key) }

// Set stores a value in the client's free-form state.
func (c *Client) Set(key string, v any) { c.state.Store(key, v) }

// Unset removes a value from the client's state.
func (c *Client) Unset(key string) { c.state.Delete(key) }

// State returns a copy of the client's state.
func (c *Client) State() map[string]any {
	out := map[string]any{}
	c.state.Range(func(k, v any) bool {
		if ks, ok := k.(string); ok {
			out[ks] = v
		}
		return true
	})
	return out
}

// Subscriptions returns the client's topics, sorted.
func (c *Client) Subscriptions() []string {
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	return slices.Sorted(maps.Keys(c.subs))
}

// HasSubscription reports whether the client subscribed to exactly topic.
func (c *Client) HasSubscription(topic string) bool {
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	_, ok := c.subs[topic]
	return ok
}

// Delivered is the number of messages written to the stream.
func (c *Client) Delivered() uint64 { return c.delivered.Load() }

// Pending is the number of queued bytes not yet written.
func (c *Client) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queue.Len()
}

// Done is closed when the client has been closed (evicted, disconnected, shut down).
func (c *Client) Done() <-chan struct{} { return c.done }

// enqueue appends one frame: its id line (eventID) followed by the shared
// tail ("event:...\ndata:...\n\n"). pos is the frame's position in the
// broker's order (0: none, as PB_CONNECT). It never blocks; over the queue
// limit the client is evicted.
func (c *Client) enqueue(tail *sharedTail, pos uint64, limit int) bool {
	return c.queueFrame(tail, pos, limit, false, nil)
}

// enqueueDeferred is enqueue that, given wakeups, collects adopted clients
// that need a writer there instead of handing each to the pool on its own:
// a fan-out then wakes the writers once.
func (c *Client) enqueueDeferred(tail *sharedTail, pos uint64, limit int, wakeups *[]*Client) bool {
	return c.queueFrame(tail, pos, limit, false, wakeups)
}

// enqueueReplayed queues a frame of a resume's replay (unbounded: the log's
// own cap bounds a replay, and an eviction here would only repeat on the
// next attempt).
func (c *Client) enqueueReplayed(tail *sharedTail, pos uint64) bool {
	return c.queueFrame(tail, pos, 0, true, nil)
}

func (c *Client) queueFrame(tail *sharedTail, pos uint64, limit int, replayed bool, wakeups *[]*Client) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if !replayed && pos > 0 && pos <= c.replayedTo && c.replayedEpoch == c.broker.Epoch() {
		c.mu.Unlock()
		return true // the replay queued it already
	}
	if c.replayUntil > 0 && pos > c.replayUntil {
		// A live record while its replay is queued (outside pubMu): it
		// follows the replay, in order (endReplay).
		tail.give() // the held frame keeps its reference into the queue
		c.afterReplay = append(c.afterReplay, replayedLive{tail, pos})
		c.mu.Unlock()
		return true
	}
	epoch := c.broker.Epoch()
	// What a non-blocking writer took but the socket refused counts against
	// client_queue; a blocking write in progress does not, as Serve's does not
	// (its bytes may already be with the peer: the writer learns only when
	// the write returns).
	held := c.unsent
	if c.conn != nil && c.conn.blocking {
		held = 0
	}
	size := held + c.queue.Len() + frameLen(c.id, epoch, pos, tail.b)
	if limit > 0 && size > limit && (c.queue.Len() > 0 || held > 0) {
		c.closeLocked(ReasonQueueFull)
		c.mu.Unlock()
		c.ended(ReasonQueueFull)
		return false
	}
	// An adopted connection's frames are queued framed as HTTP chunks.
	c.queue.appendFrame(c.id, epoch, pos, tail, c.conn != nil, false)
	c.frames++
	c.wakeLocked(wakeups)
	return true
}

// replayedLive is a live frame held back while a resume replays.
type replayedLive struct {
	tail *sharedTail // holding a reference
	pos  uint64
}

// startReplay marks the positions up to through as the resume's (the
// client had them, or the replay queues them), so live frames at or before
// it are dropped; while replaying, live frames after it are held back until
// endReplay.
func (c *Client) startReplay(through uint64, replaying bool) {
	c.mu.Lock()
	if replaying {
		c.replayUntil = through
	}
	c.replayedTo, c.replayedEpoch = through, c.broker.Epoch()
	c.mu.Unlock()
}

// endReplay queues the live frames held back during the replay and lets
// the next ones through.
func (c *Client) endReplay() {
	c.mu.Lock()
	held := c.afterReplay
	c.replayUntil, c.afterReplay = 0, nil
	if c.closed {
		c.mu.Unlock()
		for _, f := range held {
			f.tail.release()
		}
		return
	}
	epoch := c.broker.Epoch()
	for _, f := range held {
		c.queue.appendFrame(c.id, epoch, f.pos, f.tail, c.conn != nil, true)
		c.frames++
	}
	c.wakeLocked(nil)
}

// wakeLocked releases c.mu and wakes the client's writer: its Serve goroutine,
// or the writer pool (now, or through wakeups).
func (c *Client) wakeLocked(wakeups *[]*Client) {
	cs := c.conn
	if cs == nil {
		c.mu.Unlock()
		select {
		case c.wake <- struct{}{}:
		default:
		}
		return
	}
	if cs.scheduled {
		c.mu.Unlock()
		return
	}
	cs.scheduled = true
	c.mu.Unlock()
	if wakeups != nil {
		*wakeups = append(*wakeups, c)
	} else {
		c.broker.writers().push(c)
	}
}

// Serve writes the client's frames to s until the stream ends, and returns why.
// It is the client's only writer: everything pending goes out in one Write and one Flush.
// The caller unregisters the client afterwards with Broker.Disconnect. A
// write blocked on a peer that does not read fails closeGrace after the
// client is closed (by eviction, Disconnect or shutdown): s's write deadline
// is set to now, never after Serve returned.
func (c *Client) Serve(ctx context.Context, s Stream) string {
	p := c.broker.Policy()
	guard := &writeGuard{s: s}
	c.guardWrites(guard)
	defer guard.disarm()
	defer c.dropQueue() // whichever way the stream ends, nobody reads the rest
	var idle, lifetime, heartbeat <-chan time.Time
	var idleTimer, heartbeatTimer *time.Timer
	if p.IdleTimeout > 0 {
		idleTimer = time.NewTimer(p.IdleTimeout)
		defer idleTimer.Stop()
		idle = idleTimer.C
	}
	if p.MaxLifetime > 0 {
		t := time.NewTimer(p.MaxLifetime)
		defer t.Stop()
		lifetime = t.C
	}
	if p.Heartbeat > 0 {
		heartbeatTimer = time.NewTimer(p.Heartbeat)
		defer heartbeatTimer.Stop()
		heartbeat = heartbeatTimer.C
	}
	// written follows a successful write: the deadline is cleared, because on
	// HTTP/2 a write deadline is a timer that resets the stream when it
	// passes, written or not (an idle stream would die write_timeout after
	// its last write).
	written := func() {
		if p.WriteTimeout > 0 {
			_ = s.SetWriteDeadline(time.Time{})
		}
		if heartbeatTimer != nil {
			heartbeatTimer.Reset(p.Heartbeat)
		}
	}
	write := func(b []byte) error {
		now := time.Now()
		if p.WriteTimeout > 0 {
			_ = s.SetWriteDeadline(now.Add(p.WriteTimeout))
		}
		c.writingSince.Store(now.UnixNano())
		defer c.writingSince.Store(0)
		if _, err := s.Write(b); err != nil {
			return err
		}
		if err := s.Flush(); err != nil {
			return err
		}
		written()
		return nil
	}
	fail := func(err error) string {
		// Evicted or disconnected while writing: the first reason stays.
		c.Close(writeFailure(err, ctx.Err() != nil))
		return c.closeReason()
	}

	// The batch being written: the queue as it was, swapped out rather than
	// copied, written a piece at a time (the stream's own buffer gathers the
	// small ones), so a stream blocked in a write holds no copy of its frames.
	var batch frameQueue
	var iov [][]byte
	writeBatch := func() error {
		now := time.Now()
		if p.WriteTimeout > 0 {
			_ = s.SetWriteDeadline(now.Add(p.WriteTimeout))
		}
		c.writingSince.Store(now.UnixNano())
		defer c.writingSince.Store(0)
		for batch.Len() > 0 {
			iov = batch.slices(iov[:0], writePieces, writeBytes)
			for _, b := range iov {
				n, err := s.Write(b)
				batch.consume(n)
				if err != nil {
					clear(iov)
					return err
				}
			}
			clear(iov)
		}
		if err := s.Flush(); err != nil {
			return err
		}
		written()
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			c.Close(ReasonClientGone)
			return ReasonClientGone
		case <-c.done:
			reason := c.closeReason()
			if cleanEnd(reason) { // what was queued before the end still goes out
				if rest := c.takeRest(nil); len(rest) > 0 {
					_ = s.SetWriteDeadline(time.Now().Add(closeGrace)) // the guard may have fired already
					if _, err := s.Write(rest); err == nil {
						_ = s.Flush()
					}
				}
			}
			return reason
		case <-idle:
			c.Close(ReasonIdleTimeout)
			return ReasonIdleTimeout
		case <-lifetime:
			c.Close(ReasonMaxLifetime)
			return ReasonMaxLifetime
		case <-heartbeat:
			if err := write(heartbeatFrame); err != nil {
				return fail(err)
			}
		case <-c.wake:
			c.mu.Lock()
			batch, c.queue = c.queue, batch // batch is empty (reset) here
			size := batch.Len()
			frames := c.frames
			c.frames = 0
			c.inflight, c.batchShared = size, batch.shared
			c.mu.Unlock()
			if size == 0 {
				continue
			}
			err := writeBatch()
			batch.reset() // keeps small buffers for the next swap, drops a burst's
			c.mu.Lock()
			c.inflight, c.batchShared = 0, 0
			c.mu.Unlock()
			if err != nil {
				return fail(err)
			}
			c.delivered.Add(frames)
			c.bytesOut.Add(uint64(size))
			c.broker.stats.messagesOut.Add(frames)
			c.broker.stats.bytesOut.Add(uint64(size))
			if idleTimer != nil {
				idleTimer.Reset(p.IdleTimeout)
			}
		}
	}
}

// maxRetainedBuffer is the largest queue buffer a client keeps between bursts.
const maxRetainedBuffer = 64 << 10

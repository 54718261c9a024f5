package broker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// How a stream ends, for both of a client's possible writers: the goroutine
// in Serve (client.go) and the writer pool of an adopted connection (conn.go).
// Whoever ends a stream calls Close with a reason; Close decides what follows
// from the reason alone: whether what was queued still goes out (cleanEnd),
// and whether the end is an eviction, counted and logged once.

// Reasons a stream ends; they label the eviction metric and the disconnect hook.
const (
	ReasonClientGone   = "client_gone"
	ReasonQueueFull    = "queue_full"
	ReasonWriteTimeout = "write_timeout"
	ReasonWriteError   = "write_error"
	ReasonIdleTimeout  = "idle_timeout"
	ReasonMaxLifetime  = "max_lifetime"
	ReasonDisconnected = "disconnected" // admin DELETE /realtime/clients/{id}
	ReasonShutdown     = "shutdown"
	ReasonAuthStale    = "auth_stale"   // its auth record changed in a way that can't be applied in place
	ReasonQueuedBytes  = "queued_bytes" // among the stalled or largest queues when the broker passed max_queued_bytes
	ReasonMoved        = "moved"        // it resumed on another node of the cluster
)

// EvictionReasons are the reasons a broker closes a stream on its own.
var EvictionReasons = [...]string{ReasonQueueFull, ReasonWriteTimeout, ReasonWriteError, ReasonQueuedBytes}

// cleanEnd reports whether a stream ending for reason ends cleanly: what was
// queued is still written and the body is terminated properly.
func cleanEnd(reason string) bool {
	switch reason {
	case ReasonIdleTimeout, ReasonMaxLifetime, ReasonDisconnected, ReasonShutdown, ReasonAuthStale:
		return true
	}
	return false
}

// isEviction reports whether reason is an eviction: counted and logged.
func isEviction(reason string) bool { return slices.Contains(EvictionReasons[:], reason) }

// writeFailure is why a stream ends when a write to it failed with err:
// write_timeout when it missed its deadline, client_gone when the peer had
// already left (peerGone), write_error otherwise.
func writeFailure(err error, peerGone bool) string {
	switch {
	// A timeout first: net/http cancels the request context on any write
	// error, so peerGone alone would hide write_timeout evictions.
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return ReasonWriteTimeout
	case peerGone:
		return ReasonClientGone
	}
	return ReasonWriteError
}

type timeoutError interface{ Timeout() bool }

// closeGrace is how long a closed client's writer may keep writing before its
// pending write is failed; it ends at once unless a write is blocked.
const closeGrace = time.Second

// writeGuard fails Serve's write stuck on a peer that does not read, closeGrace
// after the client was closed (evicted, disconnected, shut down), without a
// goroutine per stream waiting for that: the client's close arms a timer.
// It never touches the stream after Serve returned.
type writeGuard struct {
	mu    sync.Mutex
	s     Stream
	done  bool
	timer *time.Timer
}

// arm runs when the client is closed (c.mu held).
func (g *writeGuard) arm() {
	g.mu.Lock()
	if !g.done {
		g.timer = time.AfterFunc(closeGrace, g.fire)
	}
	g.mu.Unlock()
}

func (g *writeGuard) fire() {
	g.mu.Lock()
	if !g.done {
		_ = g.s.SetWriteDeadline(time.Now())
	}
	g.mu.Unlock()
}

// disarm runs when Serve returns.
func (g *writeGuard) disarm() {
	g.mu.Lock()
	g.done = true
	if g.timer != nil {
		g.timer.Stop()
	}
	g.mu.Unlock()
}

// guardWrites arms g when c closes (at once if it already has).
func (c *Client) guardWrites(g *writeGuard) {
	c.mu.Lock()
	if c.closed {
		g.arm()
	} else {
		c.closeHook = g.arm
	}
	c.mu.Unlock()
}

func isTimeout(err error) bool {
	var te timeoutError
	return errors.As(err, &te) && te.Timeout()
}

// Close ends the client's stream with reason; its writer finishes soon after.
// Only the first reason counts: a later Close changes nothing.
func (c *Client) Close(reason string) {
	c.mu.Lock()
	ended := c.closeLocked(reason)
	c.mu.Unlock()
	if ended {
		c.ended(reason)
	}
}

// closeLocked marks c closed; it reports false when c already was. The
// caller calls ended after releasing c.mu.
func (c *Client) closeLocked(reason string) bool {
	if c.closed {
		return false
	}
	c.closed = true
	c.reason = reason
	if !cleanEnd(reason) {
		c.queue.free() // nobody will read it: free it now
	}
	close(c.done)
	if cs := c.conn; cs != nil {
		if !cs.scheduled {
			cs.scheduled = true
			c.broker.writers().push(c) // a writer closes the connection
		} else if cs.blocking {
			time.AfterFunc(closeGrace, cs.kill) // a write stuck on a peer that does not read must still end
		}
	}
	if c.closeHook != nil {
		c.closeHook()
	}
	return true
}

// ended follows the end of c's stream for reason (c.mu not held): an
// eviction is counted and logged.
func (c *Client) ended(reason string) {
	if !isEviction(reason) {
		return
	}
	b := c.broker
	b.stats.evict(reason)
	b.Policy().Logger.Info("realtime client evicted",
		zap.String("broker", b.name), zap.String("client", c.id), zap.String("reason", reason))
}

func (c *Client) closeReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// dropQueue frees c's queue once its stream has ended, letting go of the
// shared frames it still held.
func (c *Client) dropQueue() {
	c.mu.Lock()
	c.queue.free()
	c.mu.Unlock()
}

// takeRest empties c's queue at the end of its stream and returns, appended
// to dst, what it held: after a clean end it still goes out.
func (c *Client) takeRest(dst []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	dst = c.queue.take(dst)
	c.queue.free()
	return dst
}

package broker

import (
	"errors"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Conn mode: instead of a goroutine per stream (Serve), a hijacked HTTP/1.1
// connection is handed to the broker (Adopt), and a small pool of writer
// goroutines sends each client's pending frames. Frames are queued already
// framed as HTTP chunks, so a batch goes to the socket as it is: its pieces
// (shared frame tails included) in one vectored write, no copy. Nothing is
// copied for a client but what its socket takes, so a client that stops
// reading holds references to shared frames, not megabytes of its own. An idle stream then costs its Client, its buffers and
// a few runtime timers: no goroutine, no bufio, no net/http connection state.
//
// Writes never block a writer: they are non-blocking; what the kernel did not
// take stays pending and is retried shortly. A client whose writes make no
// progress for write_timeout is evicted. A peer that went away is noticed on
// the next write, which heartbeats bound.
//
// A connection whose bytes must pass through Go code on their way to the
// socket (TLS: records are encrypted by crypto/tls, which cannot resume a
// write that timed out) is written with ordinary blocking writes, each batch
// by a goroutine of its own that ends when the batch is written: an idle TLS
// stream still has no goroutine, and a stalled one holds one until its
// write_timeout (or closeGrace after it was closed). Its socket underneath is
// watched for hangups like a plain one.

// connState is a client's connection-mode state.
type connState struct {
	conn net.Conn
	raw  syscall.RawConn // the socket under conn (nil: none), watched for hangups
	// blocking: conn is written with blocking writes by a goroutine per batch
	// (TLS, or no socket to write to directly); otherwise non-blocking writes
	// to raw by the writer pool.
	blocking bool

	// rawWrite is built once so that a write allocates nothing; it writes
	// wbufs and leaves the outcome in wn and werr.
	rawWrite func(fd uintptr) bool
	wbufs    [][]byte
	wn       int
	werr     error

	// Guarded by Client.mu:
	scheduled bool // queued for a writer, being written, or waiting for a retry
	finished  bool

	// Owned by the one writer holding the client:
	batch      frameQueue // what is being written: the queue as it was when taken (swapped, not copied)
	outFrames  uint64
	batchStart time.Time     // when the batch was taken: it must be written within write_timeout
	backoff    time.Duration // retry delay while writes make no progress at all
	idle, hb   *time.Timer
	lifetime   *time.Timer
	retry      *time.Timer
	unwatch    func() // stops watching the socket for a hangup

	// Read by the timers, which re-arm themselves from these instead of being
	// reset on every write (unix nanoseconds).
	lastWrite, lastDelivery atomic.Int64

	// killed: a blocking write must fail now (set closeGrace after the close).
	killed atomic.Bool
}

// blockingChunk is how many bytes one blocking write gathers: a full TLS
// record, so that frames (a few small pieces each) are not a record each.
const blockingChunk = 16 << 10

var blockingBufs = sync.Pool{New: func() any { b := make([]byte, 0, blockingChunk); return &b }}

// writeBlocking writes the start of p to a blocking connection: one write
// of up to blockingChunk bytes (small pieces gathered; a larger first piece
// as it is), so that progress is counted as it is made. It blocks until
// that is written, deadline passes, or the stream is killed.
func (cs *connState) writeBlocking(p [][]byte, deadline time.Time) (int, error) {
	_ = cs.conn.SetWriteDeadline(deadline)
	if cs.killed.Load() {
		return 0, errKilled
	}
	if len(p[0]) >= blockingChunk {
		return cs.conn.Write(p[0])
	}
	bp := blockingBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	for _, piece := range p {
		if len(buf)+len(piece) > blockingChunk {
			break
		}
		buf = append(buf, piece...)
	}
	n, err := cs.conn.Write(buf)
	clear(buf) // no copy of a frame outlives the write
	blockingBufs.Put(bp)
	return n, err
}

// kill fails a blocking write in progress (and any later one) at once.
func (cs *connState) kill() {
	cs.killed.Store(true)
	_ = cs.conn.SetWriteDeadline(time.Now())
}

// errKilled is a blocking write failed because its stream was closed while
// the write was stuck: a timeout, as far as the client's end reason goes.
var errKilled = errKilledT{}

type errKilledT struct{}

func (errKilledT) Error() string { return "write abandoned: stream closed" }
func (errKilledT) Timeout() bool { return true }

// sendBuffer caps the kernel's send buffer of an adopted socket (the kernel
// doubles it): plenty for event streams, and it keeps a stalled client's
// backlog in our byte-bounded queue, where client_queue can see it.
const sendBuffer = 256 << 10

// retryDelay is when a client's pending bytes are tried again after the
// kernel took only part of them. A client whose socket took nothing at all
// is retried later and later, up to maxRetryDelay (never past its
// write_timeout): thousands of stalled sockets then cost a few hundred
// refused writes a second, not a writer each.
const (
	retryDelay    = 20 * time.Millisecond
	maxRetryDelay = 320 * time.Millisecond
)

// One write sends at most this many pieces (frames are about three each)
// and, beyond the first piece, this many bytes.
const (
	writePieces = 64
	writeBytes  = 256 << 10
)

// errWouldBlock is a non-blocking write that the kernel refused for now.
var errWouldBlock = errors.New("write would block")

// Adopt hands a hijacked HTTP/1.1 connection (plain or TLS), whose response
// header (with Transfer-Encoding: chunked) has been written, to the broker's
// writers. The broker closes conn when the stream ends and then disconnects
// the client.
func (b *Broker) Adopt(c *Client, conn net.Conn) {
	if b.writers() == nil { // the broker was closed
		_ = conn.Close()
		b.Disconnect(c, ReasonShutdown)
		return
	}
	p := b.Policy()
	cs := &connState{conn: conn, scheduled: true, blocking: true}
	socket := conn
	if tc, ok := conn.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		socket = tc.NetConn()
	}
	if sc, ok := socket.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			cs.raw = raw
			if socket == conn {
				if cs.rawWrite = cs.newRawWrite(); cs.rawWrite != nil {
					cs.blocking = false
				}
			}
		}
	}
	if tc, ok := socket.(*net.TCPConn); ok {
		// A stalled peer would otherwise get a send buffer autotuned to megabytes:
		// kernel memory per stalled client, and copies that hide the stall.
		_ = tc.SetWriteBuffer(sendBuffer)
		limitUnsent(tc)
	}
	now := time.Now().UnixNano()
	cs.lastWrite.Store(now)
	cs.lastDelivery.Store(now)
	if idle := p.IdleTimeout; idle > 0 {
		startTimer(&cs.idle, idle, func() {
			if left := idle - time.Duration(time.Now().UnixNano()-cs.lastDelivery.Load()); left > 0 {
				cs.idle.Reset(left)
				return
			}
			c.Close(ReasonIdleTimeout)
		})
	}
	if p.MaxLifetime > 0 {
		cs.lifetime = time.AfterFunc(p.MaxLifetime, func() { c.Close(ReasonMaxLifetime) })
	}
	if hb := p.Heartbeat; hb > 0 {
		startTimer(&cs.hb, hb, func() {
			if left := hb - time.Duration(time.Now().UnixNano()-cs.lastWrite.Load()); left > 0 {
				cs.hb.Reset(left)
				return
			}
			if c.heartbeat() {
				cs.hb.Reset(hb)
			}
		})
	}
	b.adopted.Add(1)
	cs.unwatch = b.writers().hangups.watch(c, cs)
	c.mu.Lock()
	// What was queued before adoption (PB_CONNECT) becomes the first chunk.
	if c.queue.Len() > 0 {
		c.queue.appendChunk(c.queue.take(nil))
	}
	c.conn = cs
	c.mu.Unlock()
	b.writers().push(c)
}

// startTimer stores in *t a timer that calls f after d, and arms it only
// once stored: f, and whoever f wakes, may use *t. (With time.AfterFunc(d, f)
// assigned to *t, a short d could fire before the assignment; a retry after
// a few microseconds did, and its writer read cs.retry while the first one
// still wrote it: two timers, two writers for one stream.)
func startTimer(t **time.Timer, d time.Duration, f func()) {
	*t = time.AfterFunc(time.Duration(math.MaxInt64), f)
	(*t).Reset(d)
}

// heartbeat queues an SSE comment; it is not a message and does not reset
// the idle timer. It reports false once the client is closed.
func (c *Client) heartbeat() bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.queue.appendOwn(heartbeatChunk)
	c.wakeLocked(nil)
	return true
}

// writerPool is the broker's writer goroutines for adopted connections, and
// the watcher that notices their peers hanging up.
type writerPool struct {
	mu      sync.Mutex
	cond    *sync.Cond
	queue   []*Client
	head    int
	stopped bool
	running sync.WaitGroup
	hangups *hangupWatcher
}

func (b *Broker) writers() *writerPool {
	b.writersOnce.Do(func() {
		wp := &writerPool{hangups: newHangupWatcher()}
		wp.cond = sync.NewCond(&wp.mu)
		for range max(4, 2*runtime.GOMAXPROCS(0)) {
			wp.running.Add(1)
			go wp.run()
		}
		b.writerPool = wp
	})
	return b.writerPool
}

// stop ends the writers once their queue is empty.
func (wp *writerPool) stop() {
	wp.mu.Lock()
	wp.stopped = true
	wp.mu.Unlock()
	wp.cond.Broadcast()
	wp.running.Wait()
	wp.hangups.close()
}

func (wp *writerPool) push(c *Client) {
	wp.mu.Lock()
	wp.queue = append(wp.queue, c)
	wp.mu.Unlock()
	wp.cond.Signal()
}

// pushAll queues many clients with one lock and one wakeup per writer.
func (wp *writerPool) pushAll(cs []*Client) {
	if len(cs) == 0 {
		return
	}
	wp.mu.Lock()
	wp.queue = append(wp.queue, cs...)
	wp.mu.Unlock()
	if len(cs) == 1 {
		wp.cond.Signal()
	} else {
		wp.cond.Broadcast()
	}
}

// popBatch takes up to len(dst) clients (nil when the pool is stopped).
// Batches keep the lock traffic per written client low; they are small
// enough that writers share a burst.
func (wp *writerPool) popBatch(dst []*Client) []*Client {
	wp.mu.Lock()
	for wp.head == len(wp.queue) {
		wp.queue, wp.head = wp.queue[:0], 0
		if wp.stopped {
			wp.mu.Unlock()
			return nil
		}
		wp.cond.Wait()
	}
	n := copy(dst, wp.queue[wp.head:])
	clear(wp.queue[wp.head : wp.head+n])
	wp.head += n
	wp.mu.Unlock()
	return dst[:n]
}

func (wp *writerPool) run() {
	defer wp.running.Done()
	var buf [16]*Client
	var iov [][]byte // the slices of one write, reused
	for batch := wp.popBatch(buf[:]); batch != nil; batch = wp.popBatch(buf[:]) {
		for i, c := range batch {
			if c.conn.blocking {
				go writeBlockingConn(c) // its writes may block: not in a writer
			} else {
				iov = c.writeConn(iov)
			}
			batch[i] = nil
		}
	}
}

// iovs are the slices of one write for blocking connections' goroutines.
var iovs = sync.Pool{New: func() any { s := make([][]byte, 0, writePieces); return &s }}

// writeBlockingConn is writeConn in a goroutine of its own.
func writeBlockingConn(c *Client) {
	iov := iovs.Get().(*[][]byte)
	*iov = c.writeConn((*iov)[:0])
	iovs.Put(iov)
}

// write sends p (in order, as one write where the platform has writev)
// without blocking and returns how much the kernel took. A blocking
// connection is written until p is sent or deadline passes.
func (cs *connState) write(p [][]byte, deadline time.Time) (int, error) {
	if cs.blocking {
		return cs.writeBlocking(p, deadline)
	}
	cs.wbufs = p
	err := cs.raw.Write(cs.rawWrite)
	cs.wbufs = nil
	n, werr := cs.wn, cs.werr
	if n < 0 {
		n = 0
	}
	switch {
	case werr == syscall.EAGAIN:
		return n, errWouldBlock
	case werr != nil:
		return n, werr
	}
	return n, err
}

// writeConn sends what is pending for c; iov is scratch space for the
// slices of one write, returned for reuse. The caller holds c's schedule.
func (c *Client) writeConn(iov [][]byte) [][]byte {
	b := c.broker
	p := b.Policy()
	cs := c.conn

	c.mu.Lock()
	if cs.finished {
		c.mu.Unlock()
		return iov
	}
	if c.closed {
		c.mu.Unlock()
		c.finishConn()
		return iov
	}
	took := false
	if cs.batch.Len() == 0 { // take the next batch: the queue's pieces, swapped with the spent (empty) batch
		cs.batch.reset()
		cs.batch, c.queue = c.queue, cs.batch
		if cs.blocking {
			// A blocking write holds its batch until it returns. A non-blocking
			// one counts what the socket left after the write (below): were the
			// batch counted from here, a peer that read it all could ask for
			// the next frame before the writer has recorded the write, and the
			// frame would find the client_queue full of bytes already sent.
			c.unsent, c.batchShared = cs.batch.Len(), cs.batch.shared
		}
		cs.outFrames = c.frames
		c.frames = 0
		if cs.batch.Len() > 0 {
			cs.batchStart = time.Now()
			took = true
		}
	}
	c.mu.Unlock()

	var deadline time.Time // for blocking writes: the whole batch must go out in time
	if p.WriteTimeout > 0 {
		deadline = cs.batchStart.Add(p.WriteTimeout)
	}
	progress := false
	for cs.batch.Len() > 0 {
		iov = cs.batch.slices(iov[:0], writePieces, writeBytes)
		if cs.blocking {
			c.writingSince.Store(time.Now().UnixNano())
		}
		n, err := cs.write(iov, deadline)
		if cs.blocking {
			c.writingSince.Store(0)
		}
		clear(iov) // no references to frames outlive the write
		if n > 0 {
			progress = true
			cs.batch.consume(n)
			c.bytesOut.Add(uint64(n))
			b.stats.bytesOut.Add(uint64(n))
		}
		if n > 0 || !cs.blocking {
			c.mu.Lock()
			c.unsent, c.batchShared = cs.batch.Len(), cs.batch.shared // counts against client_queue
			switch {
			case c.unsent == 0:
				c.refusedAt = 0
			case n > 0 || c.refusedAt == 0: // refused from now on
				c.refusedAt = time.Now().UnixNano()
			}
			c.mu.Unlock()
		}
		if err == nil {
			continue
		}
		if errors.Is(err, errWouldBlock) {
			// Like a write deadline in Serve: the whole batch must go out in time,
			// however much the kernel trickles in (it grows a stalled socket's
			// send buffer to megabytes, so "some progress" proves nothing).
			left := p.WriteTimeout - time.Since(cs.batchStart)
			if p.WriteTimeout > 0 && left <= 0 {
				c.Close(ReasonWriteTimeout)
				c.finishConn()
				return iov
			}
			delay := retryDelay
			if progress {
				cs.backoff = 0
			} else {
				cs.backoff = min(max(2*cs.backoff, retryDelay), maxRetryDelay)
				delay = cs.backoff
			}
			if p.WriteTimeout > 0 {
				delay = min(delay, left)
			}
			if cs.retry == nil {
				startTimer(&cs.retry, delay, func() { b.writers().push(c) })
			} else {
				cs.retry.Reset(delay)
			}
			return iov // still scheduled: the retry timer holds the client
		}
		c.Close(writeFailure(err, true)) // EPIPE, ECONNRESET...: a failed non-blocking write means the peer left
		c.finishConn()
		return iov
	}
	cs.backoff = 0
	if took || progress {
		now := time.Now().UnixNano()
		cs.lastWrite.Store(now)
		if cs.outFrames > 0 {
			c.delivered.Add(cs.outFrames)
			b.stats.messagesOut.Add(cs.outFrames)
			cs.lastDelivery.Store(now)
		}
		cs.outFrames = 0
	}

	c.mu.Lock()
	if c.closed || c.queue.Len() > 0 {
		c.mu.Unlock()
		b.writers().push(c) // more to do (or to finish): stay scheduled
		return iov
	}
	cs.scheduled = false
	c.mu.Unlock()
	return iov
}

// finishConn ends an adopted stream: a clean end of the chunked body when the
// stream ended on our side, then close, then forget the client.
func (c *Client) finishConn() {
	cs := c.conn
	c.mu.Lock()
	if cs.finished {
		c.mu.Unlock()
		return
	}
	cs.finished = true
	reason := c.reason
	c.mu.Unlock()
	for _, t := range []*time.Timer{cs.idle, cs.hb, cs.lifetime, cs.retry} {
		if t != nil {
			t.Stop()
		}
	}
	cs.unwatch()
	c.broker.Disconnect(c, reason) // forget it before the peer sees the end
	clean := cleanEnd(reason)
	if clean { // the rest of a half-written chunk first, then what was queued
		rest := append(c.takeRest(cs.batch.take(nil)), chunkedBodyEnd...)
		_ = cs.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = cs.conn.Write(rest)
	}
	if tc, ok := cs.conn.(interface{ NetConn() net.Conn }); ok && !clean {
		_ = tc.NetConn().Close() // evicted or gone: no TLS close_notify, which could wait 5s on a stalled peer
	}
	_ = cs.conn.Close()
	cs.batch.free()
	c.dropQueue()
	c.broker.adopted.Done()
}

// Close ends every stream, waits (up to 5s) for adopted connections to close,
// and stops the broker's writers. The broker must not be used afterwards.
func (b *Broker) Close() {
	b.CloseAll(ReasonShutdown)
	b.WaitAdopted(5 * time.Second)
	b.writersOnce.Do(func() {}) // no pool may start after this
	if b.writerPool != nil {
		b.writerPool.stop()
	}
	b.joinCluster(nil)
	_ = b.Transport().Close()
}

// WaitAdopted waits (up to d) until every adopted stream has been closed.
func (b *Broker) WaitAdopted(d time.Duration) bool {
	done := make(chan struct{})
	go func() { b.adopted.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

//go:build linux

package bench

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"
)

// Dialect is the protocol a subscriber speaks.
type Dialect int

const (
	// DialectPocketBase: GET /api/realtime, read PB_CONNECT, POST the subscriptions.
	DialectPocketBase Dialect = iota
	// DialectMercure: GET /.well-known/mercure?topic=T; subscribed once the head arrives.
	DialectMercure
)

// subConn states.
const (
	stConnecting = iota
	stHead
	stStream
	stClosed
)

// Why a subscriber connection ended.
const (
	closeLocal = "closed by the load generator"
	closeEOF   = "closed by the server"
	closeEnded = "stream ended by the server (last chunk)"
	closeReset = "reset"
)

var (
	pbConnect = []byte("PB_CONNECT")
	resumedOK = []byte(`"resumed":true`)
)

// subConn is one SSE subscriber: a non-blocking socket, an incremental
// parser, and the per-publisher order and loss bookkeeping.
type subConn struct {
	l      *loop
	g      *ConnGroup
	fd     int
	index  int // position in its group
	user   int // auth user index, -1 for a guest
	state  uint8
	chunk  bool // body is chunked
	subbed bool

	stalled    bool // stopped reading on purpose (workload f)
	peerClosed bool // saw RDHUP/HUP while stalled
	closeWhy   string

	head   respHead
	chunks chunkDecoder
	sse    sseParser

	clientID string
	lastID   []byte // id of the last frame received (spec.KeepLastID)
	wbuf     []byte
	tracks   []pubTrack // by publisher id
	received int64

	startedAt int64
	localPort int // known for stalled connections, to find the server's side of the socket
	churnFlip bool
}

// pubTrack is what one connection saw of one publisher's sequence.
type pubTrack struct {
	last int64
	seen bitset
}

func (c *subConn) start() {
	c.startedAt = nowNano()
	fd, err := dialFrom(c.l.lg.addr, c.g.spec.RcvBuf, c.src())
	if err != nil {
		c.fail(err.Error())
		return
	}
	c.fd = fd
	if err := c.l.register(fd, c); err != nil {
		syscall.Close(fd)
		c.fd = 0
		c.fail(err.Error())
		return
	}
	c.state = stConnecting
}

func (c *subConn) handle(ev uint32) {
	if c.state == stConnecting {
		if ev&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		if err := connectError(c.fd); err != nil {
			c.fail("connect: " + err.Error())
			return
		}
		c.state = stHead
		if c.g.spec.Stall {
			if sa, err := syscall.Getsockname(c.fd); err == nil {
				if in, ok := sa.(*syscall.SockaddrInet4); ok {
					c.localPort = in.Port
				}
			}
		}
		c.write(c.g.spec.request(c.index))
		if c.state == stClosed {
			return
		}
	}
	if ev&syscall.EPOLLOUT != 0 && len(c.wbuf) > 0 {
		c.write(nil)
	}
	if c.stalled {
		if ev&(epollRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
			c.peerClosed = true
		}
		return
	}
	if ev&(syscall.EPOLLIN|epollRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		c.readAll()
	}
}

func (c *subConn) write(p []byte) {
	buf := p
	if len(c.wbuf) > 0 {
		buf = append(c.wbuf, p...)
	}
	rest, err := writeSome(c.fd, buf)
	if err != nil {
		c.fail("write: " + err.Error())
		return
	}
	c.wbuf = append(c.wbuf[:0], rest...)
}

func (c *subConn) readAll() {
	l := c.l
	for c.state != stClosed {
		n, err := syscall.Read(c.fd, l.rbuf)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) {
				return
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if c.subbed {
				c.close(closeReset)
			} else {
				c.fail("read: " + err.Error())
			}
			return
		}
		if n == 0 {
			if c.subbed {
				c.close(closeEOF)
			} else {
				c.fail("closed by the server before subscribing")
			}
			return
		}
		l.now = nowNano()
		l.stats.reads++
		l.stats.bytes += int64(n)
		c.consume(l.rbuf[:n])
		if n < len(l.rbuf) || c.stalled {
			return
		}
	}
}

func (c *subConn) consume(p []byte) {
	if c.state == stHead {
		n, done, err := c.head.feed(p)
		if err != nil {
			c.fail("response head: " + err.Error())
			return
		}
		if !done {
			return
		}
		p = p[n:]
		if c.head.Status != 200 {
			c.fail("GET answered " + strconv.Itoa(c.head.Status))
			return
		}
		c.state, c.chunk = stStream, c.head.Chunked
		if c.g.spec.Dialect == DialectMercure {
			c.subscribed()
		}
	}
	if len(p) == 0 {
		return
	}
	if !c.chunk {
		c.body(p)
		return
	}
	_, ended, err := c.chunks.feed(p, c)
	switch {
	case err != nil:
		c.fail("chunked body: " + err.Error())
	case ended && c.state != stClosed:
		c.close(closeEnded)
	}
}

// body is the decoded stream; it feeds the SSE parser.
func (c *subConn) body(p []byte) {
	if c.state == stClosed {
		return
	}
	c.sse.feed(p, c)
}

func (c *subConn) onEvent(event, id, data []byte) {
	spec := c.g.spec
	if spec.KeepLastID && len(id) > 0 {
		c.lastID = append(c.lastID[:0], id...)
	}
	if c.clientID == "" && bytes.Equal(event, pbConnect) {
		c.clientID = string(id)
		c.g.connected.Add(1)
		if c.index < len(spec.LastEventIDs) && spec.LastEventIDs[c.index] != "" {
			if bytes.Contains(data, resumedOK) {
				c.g.resumed.Add(1)
				c.subscribed() // the server restored its subscriptions
				return
			}
			c.g.resets.Add(1)
		}
		c.postSubscription(tagSubscribe)
		return
	}
	pub, seq, ts, ok := recordStamp(data)
	if !ok || seq <= 0 || pub < 0 || pub > maxPublishers {
		c.l.stats.foreign++
		return
	}
	c.track(pub, seq, ts)
}

// maxPublishers bounds the publisher ids a connection tracks.
const maxPublishers = 1024

func (c *subConn) track(pub int, seq, ts int64) {
	st := &c.l.stats
	lat := c.l.now - ts
	st.hist.Record(lat)
	st.delivered++
	c.received++
	if c.received == c.g.spec.WantEvents {
		c.g.completedOne()
	}
	if st.events != nil {
		st.events.record(pub, seq, lat)
	}
	for len(c.tracks) <= pub {
		c.tracks = append(c.tracks, pubTrack{})
	}
	t := &c.tracks[pub]
	if t.seen.has(seq) {
		st.dups++
		return
	}
	t.seen.set(seq)
	if seq < t.last {
		st.inversions++
		return
	}
	t.last = seq
}

// postSubscription sends (or, for churn, re-sends) the subscription POST.
func (c *subConn) postSubscription(tag int) {
	spec := c.g.spec
	topics := spec.Topics
	if tag == tagChurn {
		c.churnFlip = !c.churnFlip
		if c.churnFlip {
			topics = append(topics[:len(topics):len(topics)], "posts/churn"+strconv.Itoa(c.index))
		}
	}
	body := subscriptionBody(c.clientID, topics)
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n",
		spec.Path, c.l.lg.host, len(body))
	if c.user >= 0 && c.user < len(spec.Tokens) {
		fmt.Fprintf(&b, "Authorization: %s\r\n", spec.Tokens[c.user])
	}
	b.WriteString("\r\n")
	b.Write(body)
	c.l.request(&request{data: b.Bytes(), waiter: c, tag: tag, src: c.src()})
}

// Request tags of a subscriber's POSTs.
const (
	tagSubscribe = 0
	tagChurn     = 1
)

func (c *subConn) requestDone(tag int, status int, body []byte, latency int64, err error) {
	if tag == tagChurn {
		c.l.churnDone(c, status, body, latency, err)
		return
	}
	if c.state == stClosed {
		return
	}
	if err != nil {
		c.fail("subscription POST: " + err.Error())
		return
	}
	if status != 204 && status != 200 {
		c.fail(fmt.Sprintf("subscription POST answered %d %s", status, bytes.TrimSpace(body)))
		return
	}
	c.subscribed()
}

func (c *subConn) subscribed() {
	c.subbed = true
	c.g.subscribedOne(c, nowNano()-c.startedAt)
	c.l.connectDone()
	if c.g.spec.Stall {
		c.stalled = true
	}
}

// fail ends a connection that never got subscribed.
func (c *subConn) fail(why string) {
	if c.state == stClosed {
		return
	}
	c.closeFD()
	c.state, c.closeWhy = stClosed, why
	c.g.failedOne(why)
	c.l.connectDone()
}

// close ends a connection; after subscription it counts as a drop unless local.
func (c *subConn) close(why string) {
	if c.state == stClosed {
		return
	}
	if !c.subbed {
		c.fail(why)
		return
	}
	c.closeFD()
	c.state, c.closeWhy = stClosed, why
	if why != closeLocal {
		c.g.droppedOne(why, c.stalled)
	}
}

func (c *subConn) closeFD() {
	if c.fd > 0 {
		c.l.unregister(c.fd)
		c.fd = 0
	}
}

// subscriptionBody is {"clientId":...,"subscriptions":[...]}; ids and topics need no escaping.
func subscriptionBody(clientID string, topics []string) []byte {
	b := make([]byte, 0, 64+len(clientID))
	b = append(b, `{"clientId":"`...)
	b = append(b, clientID...)
	b = append(b, `","subscriptions":[`...)
	for i, t := range topics {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, t)
	}
	return append(b, "]}"...)
}

func nowNano() int64 { return time.Now().UnixNano() }

// bitset is a growable set of small non-negative integers.
type bitset []uint64

func (b bitset) has(i int64) bool {
	w := i >> 6
	return w < int64(len(b)) && b[w]&(1<<(uint(i)&63)) != 0
}

func (b *bitset) set(i int64) {
	w := int(i >> 6)
	if w >= len(*b) {
		n := max(w+1, 2*len(*b))
		nb := make(bitset, n)
		copy(nb, *b)
		*b = nb
	}
	(*b)[w] |= 1 << (uint(i) & 63)
}

func (b bitset) count() int {
	n := 0
	for _, w := range b {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}

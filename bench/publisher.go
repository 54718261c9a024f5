//go:build linux

package bench

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// PublishTarget says how events enter a server.
type PublishTarget struct {
	Kind     Kind
	Addr     string // host:port the requests go to
	Path     string
	Headers  string // extra header lines, each ending in CRLF
	Conns    int    // keep-alive connections, each its own publisher id
	PubBase  int    // id of the first connection; ids must not repeat within a load generator
	BatchMax int    // events per request; > 1 only where the API takes arrays
	Pad      int    // bytes of padding in each record (a "pad" field)
	MinTick  time.Duration
}

// Publisher sends events open-loop: on a fixed schedule, pipelined on
// keep-alive connections, never waiting for answers. Each connection is a
// publisher with its own id and sequence, so per-publisher order is the
// order of one connection's requests.
type Publisher struct {
	t        PublishTarget
	conns    []*pubConn
	authorOf func(pub int, seq int64) string
	title    string
	pad      string
}

type pubConn struct {
	p    *Publisher
	pub  int
	conn net.Conn

	wmu    sync.Mutex
	seq    int64
	broken bool // a write failed part way: the connection is unusable

	fifo        chan pendingPub
	outstanding atomic.Int64
	readerDone  chan struct{}

	mu       sync.Mutex
	acked    bitset
	ackedN   int64
	sent     int64 // events written
	requests int64
	statuses map[int]int
	errs     map[string]int
	lat      *Histogram // request -> response
}

type pendingPub struct {
	first, last int64
	sentAt      int64
}

// NewPublisher dials t.Conns connections; authorOf (optional) gives each event's author.
func NewPublisher(t PublishTarget, authorOf func(pub int, seq int64) string) (*Publisher, error) {
	p := &Publisher{t: t, authorOf: authorOf, title: "benchmark event", pad: strings.Repeat("x", t.Pad)}
	for i := range max(t.Conns, 1) {
		conn, err := net.DialTimeout("tcp", t.Addr, 5*time.Second)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("publisher: %w", err)
		}
		conn.(*net.TCPConn).SetNoDelay(true)
		pc := &pubConn{
			p: p, pub: t.PubBase + i, conn: conn,
			fifo: make(chan pendingPub, 1<<16), readerDone: make(chan struct{}),
			statuses: map[int]int{}, errs: map[string]int{}, lat: NewHistogram(),
		}
		p.conns = append(p.conns, pc)
		go pc.readLoop()
	}
	return p, nil
}

// Run publishes rate events/s in total for d, then returns (answers may still be pending).
func (p *Publisher) Run(rate float64, d time.Duration) {
	var wg sync.WaitGroup
	per := rate / float64(len(p.conns))
	for _, pc := range p.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc.schedule(per, d)
		}()
	}
	wg.Wait()
}

func (pc *pubConn) schedule(rate float64, d time.Duration) {
	tick := time.Duration(float64(time.Second) / rate)
	tick = max(tick, pc.p.t.MinTick, time.Millisecond)
	start := time.Now()
	end := start.Add(d)
	// A server that stops reading must not hold the schedule past its end.
	pc.conn.SetWriteDeadline(end.Add(time.Second))
	defer pc.conn.SetWriteDeadline(time.Time{})
	var sent int64
	for k := 1; ; k++ {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		if due := int64(rate*now.Sub(start).Seconds()) + 1 - sent; due > 0 {
			if err := pc.publish(int(due)); err != nil {
				return
			}
			sent += due
		}
		if wait := time.Until(start.Add(time.Duration(k) * tick)); wait > 0 {
			time.Sleep(wait)
		}
	}
}

// SendOne publishes a single event now and returns its key.
func (p *Publisher) SendOne() (EventKey, error) {
	pc := p.conns[0]
	err := pc.publish(1)
	pc.wmu.Lock()
	seq := pc.seq
	pc.wmu.Unlock()
	return EventKey{Pub: pc.pub, Seq: seq}, err
}

// publish writes n events in as few requests as the API allows, stamped now.
func (pc *pubConn) publish(n int) error {
	pc.wmu.Lock()
	defer pc.wmu.Unlock()
	if pc.broken {
		return errBroken
	}
	batch := max(pc.p.t.BatchMax, 1)
	var buf bytes.Buffer
	var pend []pendingPub
	ts := nowNano()
	for n > 0 {
		k := min(n, batch)
		first := pc.seq + 1
		pc.seq += int64(k)
		pc.p.writeRequest(&buf, pc.pub, first, pc.seq, ts)
		pend = append(pend, pendingPub{first: first, last: pc.seq, sentAt: ts})
		n -= k
	}
	for _, e := range pend {
		pc.outstanding.Add(1)
		pc.fifo <- e
	}
	_, err := pc.conn.Write(buf.Bytes())
	pc.mu.Lock()
	pc.requests += int64(len(pend))
	pc.sent += pend[len(pend)-1].last - pend[0].first + 1
	if err != nil {
		pc.errs["write: "+err.Error()]++
		pc.broken = true
	}
	pc.mu.Unlock()
	return err
}

// record writes one event's record JSON.
func (p *Publisher) record(b []byte, pub int, seq, ts int64, withID bool) []byte {
	b = append(b, '{')
	if withID {
		b = append(b, `"id":"b`...)
		b = strconv.AppendInt(b, int64(pub), 10)
		b = append(b, 'x')
		b = strconv.AppendInt(b, seq, 10)
		b = append(b, `","collectionName":"posts",`...)
	}
	if p.authorOf != nil {
		b = append(b, `"author":`...)
		b = strconv.AppendQuote(b, p.authorOf(pub, seq))
		b = append(b, ',')
	}
	if p.t.Pad > 0 { // sorts before pub, seq and ts, which receivers look for at the end
		b = append(b, `"pad":"`...)
		b = append(b, p.pad...)
		b = append(b, `",`...)
	}
	b = append(b, `"pub":`...)
	b = strconv.AppendInt(b, int64(pub), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"title":`...)
	b = strconv.AppendQuote(b, p.title)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, '}')
}

func (p *Publisher) writeRequest(buf *bytes.Buffer, pub int, first, last, ts int64) {
	var body []byte
	ctype := "application/json"
	switch p.t.Kind {
	case KindOurs:
		body = append(body, '[')
		for seq := first; seq <= last; seq++ {
			if seq > first {
				body = append(body, ',')
			}
			body = append(body, `{"action":"create","record":`...)
			body = p.record(body, pub, seq, ts, true)
			body = append(body, '}')
		}
		body = append(body, ']')
	case KindPocketBase:
		body = p.record(body, pub, first, ts, false)
	case KindMercure:
		ctype = "application/x-www-form-urlencoded"
		data := p.record(nil, pub, first, ts, true)
		body = append(body, "topic=posts&data="...)
		body = append(body, url.QueryEscape(string(data))...)
	}
	fmt.Fprintf(buf, "POST %s HTTP/1.1\r\nHost: %s\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		p.t.Path, p.t.Addr, p.t.Headers, ctype, len(body))
	buf.Write(body)
}

func (pc *pubConn) readLoop() {
	defer close(pc.readerDone)
	buf := make([]byte, 64<<10)
	var rr respReader
	for {
		n, err := pc.conn.Read(buf)
		if n > 0 {
			if perr := rr.feed(buf[:n], pc); perr != nil {
				pc.mu.Lock()
				pc.errs["bad response: "+perr.Error()]++
				pc.mu.Unlock()
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (pc *pubConn) onResponse(status int, body []byte) {
	var e pendingPub
	select {
	case e = <-pc.fifo:
	default:
		return // an answer to nothing: the server is confused, not us
	}
	pc.outstanding.Add(-1)
	lat := nowNano() - e.sentAt
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.lat.Record(lat)
	pc.statuses[status]++
	if status >= 200 && status < 300 {
		for s := e.first; s <= e.last; s++ {
			pc.acked.set(s)
		}
		pc.ackedN += e.last - e.first + 1
		return
	}
	if len(pc.errs) < 20 {
		pc.errs[fmt.Sprintf("%d %s", status, bytes.TrimSpace(body))]++
	}
}

// Drain waits up to timeout for every answer.
func (p *Publisher) Drain(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		left := int64(0)
		for _, pc := range p.conns {
			left += pc.outstanding.Load()
		}
		if left == 0 {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// Close closes the connections; unanswered requests stay unacknowledged.
func (p *Publisher) Close() {
	for _, pc := range p.conns {
		pc.conn.Close()
		<-pc.readerDone
	}
}

// PubStats is what the publisher sent and what the server acknowledged.
type PubStats struct {
	Sent, Acked, Requests int64
	Statuses              map[int]int
	Errors                map[string]int
	Latency               *Histogram
}

// Stats sums the connections.
func (p *Publisher) Stats() PubStats {
	s := PubStats{Statuses: map[int]int{}, Errors: map[string]int{}, Latency: NewHistogram()}
	for _, pc := range p.conns {
		pc.mu.Lock()
		s.Sent += pc.sent
		s.Acked += pc.ackedN
		s.Requests += pc.requests
		for k, v := range pc.statuses {
			s.Statuses[k] += v
		}
		for k, v := range pc.errs {
			s.Errors[k] += v
		}
		s.Latency.Merge(pc.lat)
		pc.mu.Unlock()
	}
	return s
}

// Acked is, per publisher id, the set of acknowledged sequence numbers.
func (p *Publisher) Acked() map[int]bitset {
	out := map[int]bitset{}
	for _, pc := range p.conns {
		pc.mu.Lock()
		out[pc.pub] = append(bitset(nil), pc.acked...)
		pc.mu.Unlock()
	}
	return out
}

var errBroken = errors.New("publisher connection broken by an earlier write error")

// mercureJWT is an HS256 token allowing publication to every topic.
func mercureJWT(secret string) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims := enc.EncodeToString([]byte(`{"mercure":{"publish":["*"]}}`))
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(head + "." + claims))
	return head + "." + claims + "." + enc.EncodeToString(mac.Sum(nil))
}

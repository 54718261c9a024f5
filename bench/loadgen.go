//go:build linux

package bench

import (
	"fmt"
	"math/bits"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// LoadGen holds subscriber connections to one server on GOMAXPROCS epoll loops.
type LoadGen struct {
	addr  *syscall.SockaddrInet4
	host  string
	loops []*loop
	next  int // loop of the next connection
}

// NewLoadGen starts the loops; reqConns is the number of keep-alive request
// sockets per loop (subscription POSTs).
func NewLoadGen(hostport string, reqConns int) (*LoadGen, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	ip := net.ParseIP(host).To4()
	p, err := strconv.Atoi(port)
	if ip == nil || err != nil {
		return nil, fmt.Errorf("load generator needs an IPv4 host:port, got %q", hostport)
	}
	lg := &LoadGen{addr: &syscall.SockaddrInet4{Port: p}, host: hostport}
	copy(lg.addr.Addr[:], ip)
	for i := range runtime.GOMAXPROCS(0) {
		l, err := newLoop(lg, i)
		if err != nil {
			lg.Close()
			return nil, err
		}
		for range max(reqConns, 1) {
			l.reqs = append(l.reqs, &reqConn{l: l})
		}
		lg.loops = append(lg.loops, l)
		go l.run()
	}
	return lg, nil
}

// Close closes every socket and stops the loops.
func (lg *LoadGen) Close() {
	for _, l := range lg.loops {
		l.stopLoop()
	}
	lg.loops = nil
}

// ConnSpec says how a group of subscribers connects and subscribes.
type ConnSpec struct {
	Dialect     Dialect
	Path        string   // /api/realtime or /.well-known/mercure
	Topics      []string // POSTed (PocketBase) or query topics (Mercure)
	Tokens      []string // Authorization values by user index
	UserOf      func(i int) int
	Stall       bool      // stop reading once subscribed
	RcvBuf      int       // SO_RCVBUF, 0 = kernel default
	MaxInflight int       // connects in progress at once over all loops; 0 = 512
	SourceIPs   [][4]byte // bind connection i (and its POSTs) to SourceIPs[i%len]; empty = kernel's choice

	// Resume (ours): connection i sends Last-Event-ID: LastEventIDs[i] when
	// it is not empty; a PB_CONNECT saying "resumed":true subscribes it
	// without a POST, "resumed":false is a reset (it POSTs as a new client).
	LastEventIDs []string
	KeepLastID   bool  // remember the id of the last frame each connection got (LoadGen.LastEventIDs)
	WantEvents   int64 // a connection is complete once it got this many stamped events; 0 = never

	getRequest []byte
}

// request is the GET connection i sends.
func (s *ConnSpec) request(i int) []byte {
	if i >= len(s.LastEventIDs) || s.LastEventIDs[i] == "" {
		return s.getRequest
	}
	head := s.getRequest[:len(s.getRequest)-2] // without the blank line
	r := make([]byte, 0, len(s.getRequest)+len(s.LastEventIDs[i])+17)
	r = append(r, head...)
	r = append(r, "Last-Event-ID: "...)
	r = append(r, s.LastEventIDs[i]...)
	return append(r, "\r\n\r\n"...)
}

func (s *ConnSpec) build(host string) {
	path := s.Path
	if s.Dialect == DialectMercure {
		for i, t := range s.Topics {
			sep := "&"
			if i == 0 {
				sep = "?"
			}
			path += sep + "topic=" + t
		}
	}
	s.getRequest = []byte("GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n")
}

// ConnGroup is a set of connections started together.
type ConnGroup struct {
	spec    *ConnSpec
	n       int
	started time.Time
	done    chan struct{}

	connected  atomic.Int64 // PB_CONNECT received
	subscribed atomic.Int64
	failed     atomic.Int64
	lastSubAt  atomic.Int64
	resumed    atomic.Int64 // PB_CONNECT said "resumed":true
	resets     atomic.Int64 // sent Last-Event-ID, PB_CONNECT said "resumed":false
	complete   atomic.Int64 // got WantEvents stamped events
	lastDoneAt atomic.Int64 // when the last of them completed

	mu         sync.Mutex
	connectLat *Histogram
	failures   map[string]int
	drops      map[string]int // subscribed connections the server closed
	stallDrops int
}

func (g *ConnGroup) subscribedOne(c *subConn, latency int64) {
	g.mu.Lock()
	g.connectLat.Record(latency)
	g.mu.Unlock()
	g.lastSubAt.Store(nowNano())
	g.subscribed.Add(1)
	g.checkDone()
}

func (g *ConnGroup) completedOne() {
	g.lastDoneAt.Store(nowNano())
	g.complete.Add(1)
}

func (g *ConnGroup) failedOne(why string) {
	g.mu.Lock()
	g.failures[why]++
	g.mu.Unlock()
	g.failed.Add(1)
	g.checkDone()
}

func (g *ConnGroup) droppedOne(why string, stalled bool) {
	g.mu.Lock()
	if stalled {
		g.stallDrops++
	} else {
		g.drops[why]++
	}
	g.mu.Unlock()
}

func (g *ConnGroup) checkDone() {
	if g.subscribed.Load()+g.failed.Load() == int64(g.n) {
		select {
		case <-g.done:
		default:
			close(g.done)
		}
	}
}

// Wait blocks until every connection subscribed or failed, or timeout.
func (g *ConnGroup) Wait(timeout time.Duration) error {
	select {
	case <-g.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%d of %d connections subscribed, %d failed after %v",
			g.subscribed.Load(), g.n, g.failed.Load(), timeout)
	}
}

// GroupStats summarises a group.
type GroupStats struct {
	N, Subscribed, Failed int
	Elapsed               time.Duration // start to last subscription
	ConnectP50, P99, Max  time.Duration
	Failures, Drops       map[string]int
	StallDrops            int

	Resumed, Resets, Complete int
	Completed                 time.Duration // start to the last connection's WantEvents-th event
}

// Stats is a snapshot of the group's counters.
func (g *ConnGroup) Stats() GroupStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := GroupStats{
		N: g.n, Subscribed: int(g.subscribed.Load()), Failed: int(g.failed.Load()),
		ConnectP50: time.Duration(g.connectLat.Quantile(0.5)),
		P99:        time.Duration(g.connectLat.Quantile(0.99)),
		Max:        time.Duration(g.connectLat.Max()),
		Failures:   copyMap(g.failures), Drops: copyMap(g.drops), StallDrops: g.stallDrops,
	}
	if last := g.lastSubAt.Load(); last > 0 {
		s.Elapsed = time.Duration(last - g.started.UnixNano())
	}
	s.Resumed, s.Resets, s.Complete = int(g.resumed.Load()), int(g.resets.Load()), int(g.complete.Load())
	if last := g.lastDoneAt.Load(); last > 0 {
		s.Completed = time.Duration(last - g.started.UnixNano())
	}
	return s
}

func copyMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Connect starts n connections spread over the loops, at most
// spec.MaxInflight connecting at once; it returns without waiting.
func (lg *LoadGen) Connect(spec *ConnSpec, n int) *ConnGroup {
	spec.build(lg.host)
	if spec.MaxInflight <= 0 {
		spec.MaxInflight = 512
	}
	g := &ConnGroup{
		spec: spec, n: n, started: time.Now(), done: make(chan struct{}),
		connectLat: NewHistogram(), failures: map[string]int{}, drops: map[string]int{},
	}
	if n == 0 {
		close(g.done)
		return g
	}
	perLoop := make([][]*subConn, len(lg.loops))
	for i := range n {
		li := lg.next
		lg.next = (lg.next + 1) % len(lg.loops)
		user := -1
		if spec.UserOf != nil {
			user = spec.UserOf(i)
		}
		perLoop[li] = append(perLoop[li], &subConn{l: lg.loops[li], g: g, index: i, user: user})
	}
	limit := max(1, spec.MaxInflight/len(lg.loops))
	for li, l := range lg.loops {
		conns := perLoop[li]
		l.post(func() {
			l.subs = append(l.subs, conns...)
			l.queued = append(l.queued, conns...)
			l.maxInflight = limit
			l.pump()
		})
	}
	return g
}

// pump starts queued connects while there is room.
func (l *loop) pump() {
	for l.inflight < l.maxInflight && len(l.queued) > 0 {
		c := l.queued[0]
		l.queued[0] = nil
		l.queued = l.queued[1:]
		l.inflight++
		c.start()
	}
}

func (l *loop) connectDone() {
	l.inflight--
	l.pump()
}

// CloseAll closes every subscriber connection (the server sees them go).
func (lg *LoadGen) CloseAll() {
	lg.eachLoop(func(l *loop) {
		l.queued = nil
		for _, c := range l.subs {
			c.close(closeLocal)
		}
		l.subs = nil
		l.inflight = 0
	})
}

// StalledPorts lists the local ports of g's subscribed stalled connections,
// and counts those whose socket already reported the server going away.
func (lg *LoadGen) StalledPorts(g *ConnGroup) (ports []int, gone int) {
	var mu sync.Mutex
	lg.eachLoop(func(l *loop) {
		for _, c := range l.subs {
			if c.g != g || !c.subbed {
				continue
			}
			mu.Lock()
			if c.peerClosed || c.state == stClosed && c.closeWhy != closeLocal {
				gone++
			} else {
				ports = append(ports, c.localPort)
			}
			mu.Unlock()
		}
	})
	return ports, gone
}

// LastEventIDs is, by connection index, the id of the last frame each
// connection of g received (spec.KeepLastID); "" for one that got none.
func (lg *LoadGen) LastEventIDs(g *ConnGroup) []string {
	ids := make([]string, g.n)
	lg.eachLoop(func(l *loop) {
		for _, c := range l.subs {
			if c.g == g && len(c.lastID) > 0 {
				ids[c.index] = string(c.lastID) // distinct indexes: no two loops write one element
			}
		}
	})
	return ids
}

func (lg *LoadGen) eachLoop(f func(l *loop)) {
	var wg sync.WaitGroup
	for _, l := range lg.loops {
		wg.Add(1)
		l.post(func() { f(l); wg.Done() })
	}
	wg.Wait()
}

// Counters are cumulative totals over all loops.
type Counters struct {
	Delivered  int64 // stamped frames received
	Dups       int64
	Inversions int64
	Foreign    int64 // events without a stamp (not ours)
	Reads      int64 // read(2) calls that returned data on subscriber sockets
	Bytes      int64
	Wakeups    int64
	ReqWrites  int64
	ReqRetries int64
}

// Counters sums the loops' counters.
func (lg *LoadGen) Counters() Counters {
	var mu sync.Mutex
	var c Counters
	lg.eachLoop(func(l *loop) {
		s := &l.stats
		mu.Lock()
		c.Delivered += s.delivered
		c.Dups += s.dups
		c.Inversions += s.inversions
		c.Foreign += s.foreign
		c.Reads += s.reads
		c.Bytes += s.bytes
		c.Wakeups += s.wakeups
		c.ReqWrites += s.reqWrites
		c.ReqRetries += s.reqRetries
		mu.Unlock()
	})
	return c
}

// ResetLatency empties the delivery latency histograms.
func (lg *LoadGen) ResetLatency() {
	lg.eachLoop(func(l *loop) { l.stats.hist.Reset() })
}

// Latency merges the loops' delivery latency histograms since the last reset.
func (lg *LoadGen) Latency() *Histogram {
	var mu sync.Mutex
	h := NewHistogram()
	lg.eachLoop(func(l *loop) {
		mu.Lock()
		h.Merge(l.stats.hist)
		mu.Unlock()
	})
	return h
}

// TrackEvents turns per-event delivery accounting on (with a fresh table) or off.
func (lg *LoadGen) TrackEvents(on bool) {
	lg.eachLoop(func(l *loop) {
		l.stats.events = nil
		if on {
			l.stats.events = eventTable{}
		}
	})
}

// EventStat is how one published event reached the subscribers.
type EventStat struct {
	Deliveries int64
	MaxLatency int64 // ns: receive time of the last delivery minus publish time
}

// EventStats merges the per-event tables.
func (lg *LoadGen) EventStats() map[EventKey]EventStat {
	var mu sync.Mutex
	out := map[EventKey]EventStat{}
	lg.eachLoop(func(l *loop) {
		mu.Lock()
		defer mu.Unlock()
		for k, v := range l.stats.events {
			o := out[k]
			o.Deliveries += v.Deliveries
			o.MaxLatency = max(o.MaxLatency, v.MaxLatency)
			out[k] = o
		}
	})
	return out
}

// EventKey names a published event.
type EventKey struct {
	Pub int
	Seq int64
}

type eventTable map[EventKey]EventStat

func (t eventTable) record(pub int, seq, lat int64) {
	k := EventKey{pub, seq}
	s := t[k]
	s.Deliveries++
	s.MaxLatency = max(s.MaxLatency, lat)
	t[k] = s
}

// loopStats is owned by a loop's thread.
type loopStats struct {
	delivered, dups, inversions, foreign int64
	reads, bytes, wakeups                int64
	reqWrites, reqConnects, reqRetries   int64
	strayResponses                       int64
	hist                                 *Histogram
	events                               eventTable
}

func (s *loopStats) reset() { *s = loopStats{hist: NewHistogram()} }

// Verification is the loss, duplicate and order check at the end of a run.
type Verification struct {
	Checked       int   // healthy subscribed connections checked
	Expected      int64 // deliveries they should have had
	Missing       int64 // acknowledged events a connection never received
	ConnsMissing  int   // connections with at least one missing event
	ClosedHealthy int   // healthy subscribed connections the server closed
}

// Verify checks every subscribed, non-stalled connection of groups against
// the events the publisher got acknowledged; expect says whether a
// connection of user u should get event (pub, seq).
func (lg *LoadGen) Verify(acked map[int]bitset, expect func(user, pub int, seq int64) bool, groups ...*ConnGroup) Verification {
	in := map[*ConnGroup]bool{}
	for _, g := range groups {
		in[g] = true
	}
	var mu sync.Mutex
	var v Verification
	lg.eachLoop(func(l *loop) {
		var part Verification
		for _, c := range l.subs {
			if !in[c.g] || !c.subbed || c.g.spec.Stall {
				continue
			}
			if c.state == stClosed {
				if c.closeWhy != closeLocal {
					part.ClosedHealthy++
				}
				continue
			}
			part.Checked++
			missing := int64(0)
			for pub, set := range acked {
				var seen bitset
				if pub < len(c.tracks) {
					seen = c.tracks[pub].seen
				}
				for w, word := range set {
					for ; word != 0; word &= word - 1 {
						seq := int64(w)*64 + int64(bits.TrailingZeros64(word))
						if expect != nil && !expect(c.user, pub, seq) {
							continue
						}
						part.Expected++
						if !seen.has(seq) {
							missing++
						}
					}
				}
			}
			part.Missing += missing
			if missing > 0 {
				part.ConnsMissing++
			}
		}
		mu.Lock()
		v.Checked += part.Checked
		v.Expected += part.Expected
		v.Missing += part.Missing
		v.ConnsMissing += part.ConnsMissing
		v.ClosedHealthy += part.ClosedHealthy
		mu.Unlock()
	})
	return v
}

package auth

import (
	"container/list"
	"errors"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"
)

// ErrLimited is wrapped by the error Authenticate returns when a new lookup
// was refused because too many were in flight or waiting, overall or from the
// caller's IP. That error also wraps ErrUnavailable (503) and is a
// *LimitError, whose RetryAfter the caller can send as Retry-After.
var ErrLimited = errors.New("too many auth lookups")

// retryAfter is what a refused caller is told to wait: about one queue
// timeout, time for a burst to drain.
const retryAfter = time.Second

// LimitError is a lookup refused by the concurrency limit (Config.MaxConcurrent).
type LimitError struct {
	perClient bool // the caller's IP had its share in flight or waiting
}

func (e *LimitError) Error() string {
	if e.perClient {
		return "auth: too many lookups in flight from this client; try again later"
	}
	return "auth: too many lookups in flight; try again later"
}

// Is makes a LimitError match ErrLimited and ErrUnavailable.
func (e *LimitError) Is(target error) bool { return target == ErrLimited || target == ErrUnavailable }

// RetryAfter is how long the caller should wait before trying again.
func (e *LimitError) RetryAfter() time.Duration { return retryAfter }

// limiter bounds the new lookups in flight (max), those waiting for a slot
// (maxQueue, each at most wait) and one client's share of both (perClient).
// Slots are handed to waiters in arrival order.
type limiter struct {
	max, maxQueue, perClient int
	wait                     time.Duration

	mu       sync.Mutex
	inFlight int
	queue    list.List      // of *waiter
	byClient map[string]int // in flight + waiting, per client
}

type waiter struct {
	client  string
	ready   chan struct{} // closed when granted
	granted bool          // under limiter.mu
	elem    *list.Element
}

func newLimiter(n *normalized) *limiter {
	if n.MaxConcurrent <= 0 {
		return nil
	}
	return &limiter{
		max:       n.MaxConcurrent,
		maxQueue:  max(0, n.MaxQueue),
		perClient: n.MaxPerClient,
		wait:      n.QueueTimeout,
		byClient:  make(map[string]int),
	}
}

// acquire takes a slot for client, waiting in the queue if there is room;
// release gives it back.
func (l *limiter) acquire(client string) (release func(), refused *LimitError) {
	l.mu.Lock()
	if l.perClient > 0 && l.byClient[client] >= l.perClient {
		l.mu.Unlock()
		return nil, &LimitError{perClient: true}
	}
	if l.inFlight < l.max && l.queue.Len() == 0 {
		l.inFlight++
		l.byClient[client]++
		l.mu.Unlock()
		return func() { l.release(client) }, nil
	}
	if l.queue.Len() >= l.maxQueue {
		l.mu.Unlock()
		return nil, &LimitError{}
	}
	w := &waiter{client: client, ready: make(chan struct{})}
	w.elem = l.queue.PushBack(w)
	l.byClient[client]++
	l.mu.Unlock()

	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return func() { l.release(client) }, nil
	case <-t.C:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.granted { // handed a slot as the wait ran out: take it
		return func() { l.release(client) }, nil
	}
	l.queue.Remove(w.elem)
	l.forget(client)
	return nil, &LimitError{}
}

// release hands the slot to the longest waiter, or frees it.
func (l *limiter) release(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forget(client)
	if front := l.queue.Front(); front != nil {
		w := l.queue.Remove(front).(*waiter)
		w.granted = true
		close(w.ready)
		return
	}
	l.inFlight--
}

func (l *limiter) forget(client string) {
	if l.byClient[client]--; l.byClient[client] <= 0 {
		delete(l.byClient, client)
	}
}

// clientIP is the client a request's lookup is charged to.
func (a *Authenticator) clientIP(r *http.Request) string {
	if a.cfg.ClientIP != nil {
		if ip := a.cfg.ClientIP(r); ip != "" {
			return ip
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Refusals are logged at most once per refusalLogEvery, naming at most
// refusalLogIPs client IPs with their counts since the previous line.
const (
	refusalLogEvery = 10 * time.Second
	refusalLogIPs   = 16
)

// refusalLog aggregates refused lookups into rate-limited warnings.
type refusalLog struct {
	log *zap.Logger

	mu        sync.Mutex
	next      time.Time         // no line before this
	since     time.Time         // start of the counts below
	byIP      map[string]uint64 // at most refusalLogIPs
	perClient uint64            // refused: the IP had its share
	full      uint64            // refused: every slot and queue place taken
	otherIPs  uint64            // refusals from IPs beyond the map's bound
}

func (l *refusalLog) note(ip string, e *LimitError) {
	if l.log == nil {
		return
	}
	now := time.Now()
	l.mu.Lock()
	if l.byIP == nil {
		l.byIP = make(map[string]uint64)
		l.since = now
	}
	if _, ok := l.byIP[ip]; ok || len(l.byIP) < refusalLogIPs {
		l.byIP[ip]++
	} else {
		l.otherIPs++
	}
	if e.perClient {
		l.perClient++
	} else {
		l.full++
	}
	if now.Before(l.next) {
		l.mu.Unlock()
		return
	}
	ips := make([]string, 0, len(l.byIP))
	for ip := range l.byIP {
		ips = append(ips, ip)
	}
	sort.Slice(ips, func(i, j int) bool { return l.byIP[ips[i]] > l.byIP[ips[j]] })
	counts := make([]zap.Field, 0, len(ips))
	for _, ip := range ips {
		counts = append(counts, zap.Uint64(ip, l.byIP[ip]))
	}
	fields := []zap.Field{
		zap.Dict("refused_by_ip", counts...),
		zap.Uint64("over_ip_share", l.perClient),
		zap.Uint64("all_slots_busy", l.full),
		zap.Duration("over", now.Sub(l.since)),
	}
	if l.otherIPs > 0 {
		fields = append(fields, zap.Uint64("from_other_ips", l.otherIPs))
	}
	l.byIP, l.perClient, l.full, l.otherIPs = nil, 0, 0, 0
	l.next = now.Add(refusalLogEvery)
	l.mu.Unlock()
	l.log.Warn("realtime auth lookups refused: too many in flight (auth max_concurrent); answered 503 with Retry-After", fields...)
}

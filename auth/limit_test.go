package auth

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// heldEndpoint is a slow auth endpoint: a token "slow-<id>" is the user <id>,
// answered only once release is closed; other tokens are answered at once as
// usersEndpoint does. It records how many requests it holds at once.
type heldEndpoint struct {
	*endpoint
	release   chan struct{}
	held      atomic.Int64 // requests inside the handler now
	peak      atomic.Int64 // most requests inside the handler at once
	closeOnce sync.Once
}

func newHeldEndpoint(t *testing.T) *heldEndpoint {
	h := &heldEndpoint{release: make(chan struct{})}
	h.endpoint = newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		n := h.held.Add(1)
		for p := h.peak.Load(); n > p && !h.peak.CompareAndSwap(p, n); p = h.peak.Load() {
		}
		tok := stripBearer(r.Header.Get("Authorization"))
		if id, ok := strings.CutPrefix(tok, "slow-"); ok {
			select {
			case <-h.release:
			case <-r.Context().Done():
			}
			h.held.Add(-1) // before answering: the caller's slot is freed only after
			writeJSON(w, 200, map[string]any{"id": id, "collectionId": "pbc_users"})
			return
		}
		h.held.Add(-1)
		usersEndpoint(w, r)
	})
	t.Cleanup(h.open) // runs before the server's Close, which waits for handlers
	return h
}

func (h *heldEndpoint) open() { h.closeOnce.Do(func() { close(h.release) }) }

// from is a POST with token tok from client IP ip, as Caddy would name it.
func from(ip, tok string) *http.Request {
	r := withToken(tok)
	r.RemoteAddr = ip + ":40000"
	return r
}

type result struct {
	id  string
	err error
}

// authAsync runs Authenticate in a goroutine; the result arrives on out.
func authAsync(a *Authenticator, r *http.Request, out chan<- result, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		au, err := a.Authenticate(r)
		res := result{err: err}
		if au != nil {
			res.id = au.ID
		}
		out <- res
	}()
}

// recv takes the next result; the bound only keeps a broken test from hanging.
func recv(t *testing.T, out <-chan result) result {
	t.Helper()
	select {
	case res := <-out:
		return res
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for Authenticate")
		return result{}
	}
}

func mustLimited(t *testing.T, err error, perClient bool) {
	t.Helper()
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrLimited) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v: want a *LimitError wrapping ErrLimited and ErrUnavailable", err)
	}
	if le.perClient != perClient {
		t.Fatalf("error %q: per-client = %v, want %v", err, le.perClient, perClient)
	}
	// What the handler reads to send Retry-After, without importing auth.
	var ra interface{ RetryAfter() time.Duration }
	if !errors.As(err, &ra) || ra.RetryAfter() < time.Second {
		t.Fatalf("error %v: no RetryAfter of a second or more", err)
	}
}

// A flood of new tokens from many IPs: the endpoint never sees more than
// MaxConcurrent lookups at once, and everyone beyond slots and queue is refused
// while the admitted lookups are still held (without waiting for them).
func TestLimitBoundsLookupsInFlight(t *testing.T) {
	const limit, flood = 4, 100
	ep := newHeldEndpoint(t)
	a := newAuth(t, Config{
		URL: ep.URL, Timeout: time.Minute,
		MaxConcurrent: limit, MaxQueue: limit, QueueTimeout: 20 * time.Millisecond,
		ClientIP: func(r *http.Request) string { return r.Header.Get("X-Client") },
	})
	out := make(chan result, flood)
	var wg sync.WaitGroup
	for i := range flood {
		r := withToken(fmt.Sprintf("slow-u%d", i))
		r.Header.Set("X-Client", fmt.Sprintf("198.51.100.%d", i)) // one new token per IP
		authAsync(a, r, out, &wg)
	}
	for range flood - limit {
		mustLimited(t, recv(t, out).err, false)
	}
	waitFor(t, "the admitted lookups held at the endpoint", func() bool { return ep.held.Load() == limit })
	if peak := ep.peak.Load(); peak != limit {
		t.Fatalf("peak concurrency at the endpoint %d, want %d", peak, limit)
	}
	ep.open()
	for range limit {
		if res := recv(t, out); res.err != nil || !strings.HasPrefix(res.id, "u") {
			t.Fatalf("admitted lookup: %+v", res)
		}
	}
	wg.Wait()
	if p := ep.peak.Load(); p > limit {
		t.Fatalf("peak concurrency at the endpoint %d > %d", p, limit)
	}
	s := a.Stats()
	if s.Misses != limit || s.Limited != flood-limit || s.Hits != 0 || s.Shared != 0 {
		t.Fatalf("stats = %+v", s)
	}
	if n := ep.count(); n != limit {
		t.Fatalf("%d endpoint requests, want %d", n, limit)
	}
}

// One IP flooding takes only its share; another IP's new token is looked up
// at once meanwhile. The client is RemoteAddr's host by default.
func TestLimitPerClientShare(t *testing.T) {
	const flood = 50
	ep := newHeldEndpoint(t)
	a := newAuth(t, Config{URL: ep.URL, Timeout: time.Minute, MaxConcurrent: 8}) // share: 8/4 = 2
	out := make(chan result, flood)
	var wg sync.WaitGroup
	for i := range flood {
		authAsync(a, from("203.0.113.66", fmt.Sprintf("slow-x%d", i)), out, &wg)
	}
	for range flood - 2 {
		mustLimited(t, recv(t, out).err, true)
	}
	waitFor(t, "the flooding IP's share of 2 held at the endpoint", func() bool { return ep.held.Load() == 2 })
	// Another client, new token, while the flood's lookups are held.
	mustAuth(t, a, from("192.0.2.7", "good-victim"), "victim")
	ep.open()
	for range 2 {
		if res := recv(t, out); res.err != nil {
			t.Fatal(res.err)
		}
	}
	wg.Wait()
	if p := ep.peak.Load(); p > 8 {
		t.Fatalf("peak concurrency at the endpoint %d > 8", p)
	}
	if s := a.Stats(); s.Limited != flood-2 || s.Misses != 3 {
		t.Fatalf("stats = %+v", s)
	}
}

// While every slot is taken and nothing may wait, cached records, cached
// refusals and callers joining a lookup in flight are still answered.
func TestLimitCachedAndSharedNeverWait(t *testing.T) {
	ep := newHeldEndpoint(t)
	a := newAuth(t, Config{URL: ep.URL, Timeout: time.Minute, MaxConcurrent: 2, MaxQueue: -1, MaxPerClient: -1})
	var waiting atomic.Int64
	a.testHookWaiting = func() { waiting.Add(1) }
	mustAuth(t, a, from("192.0.2.1", "good-u1"), "u1")
	mustAuth(t, a, from("192.0.2.1", "bad"), "")

	out := make(chan result, 3)
	var wg sync.WaitGroup
	authAsync(a, from("192.0.2.2", "slow-s1"), out, &wg)
	authAsync(a, from("192.0.2.3", "slow-s2"), out, &wg)
	waitFor(t, "both slots held at the endpoint", func() bool { return ep.held.Load() == 2 })

	_, err := a.Authenticate(from("192.0.2.4", "good-new"))
	mustLimited(t, err, false)
	mustAuth(t, a, from("192.0.2.4", "good-u1"), "u1") // cached record
	mustAuth(t, a, from("192.0.2.4", "bad"), "")       // cached refusal

	before := waiting.Load()
	authAsync(a, from("192.0.2.5", "slow-s1"), out, &wg) // joins the lookup in flight
	waitFor(t, "the caller to join the lookup", func() bool { return waiting.Load() > before })
	ep.open()
	ids := map[string]int{}
	for range 3 {
		res := recv(t, out)
		if res.err != nil {
			t.Fatalf("lookup in flight: %v", res.err)
		}
		ids[res.id]++
	}
	wg.Wait()
	if ids["s1"] != 2 || ids["s2"] != 1 {
		t.Fatalf("answers %v", ids)
	}
	if s := a.Stats(); s.Hits != 2 || s.Shared != 1 || s.Limited != 1 || s.Misses != 4 {
		t.Fatalf("stats = %+v", s)
	}
	if n := ep.count(); n != 4 {
		t.Fatalf("%d endpoint requests, want 4", n)
	}
}

func TestLimiterQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &limiter{max: 1, maxQueue: 1, perClient: 2, wait: time.Second, byClient: map[string]int{}}
		releaseA, refused := l.acquire("a")
		if refused != nil {
			t.Fatal(refused)
		}
		// b waits; the slot is handed to it when a is done.
		gotB := make(chan func())
		go func() {
			rel, refused := l.acquire("b")
			if refused != nil {
				t.Error(refused)
			}
			gotB <- rel
		}()
		synctest.Wait()
		if _, refused := l.acquire("c"); refused == nil || refused.perClient {
			t.Fatalf("queue full: refused = %v, want a busy refusal", refused)
		}
		releaseA()
		releaseB := <-gotB

		// d waits its turn, then gives up after the queue timeout.
		start := time.Now()
		if _, refused := l.acquire("d"); refused == nil || refused.perClient {
			t.Fatalf("after the wait: refused = %v, want a busy refusal", refused)
		}
		if waited := time.Since(start); waited != time.Second {
			t.Fatalf("waited %v in the queue, want 1s", waited)
		}

		// A client's share counts its waiting lookups too.
		gotB2 := make(chan func())
		go func() {
			rel, _ := l.acquire("b") // b's second: waits
			gotB2 <- rel
		}()
		synctest.Wait()
		if _, refused := l.acquire("b"); refused == nil || !refused.perClient {
			t.Fatalf("b's third: refused = %v, want a per-client refusal", refused)
		}
		releaseB()
		(<-gotB2)()

		l.mu.Lock()
		defer l.mu.Unlock()
		if l.inFlight != 0 || l.queue.Len() != 0 || len(l.byClient) != 0 {
			t.Fatalf("limiter not empty: %d in flight, %d waiting, clients %v", l.inFlight, l.queue.Len(), l.byClient)
		}
	})
}

// JWT verification is local: no slots, however many new tokens at once.
func TestLimitDoesNotApplyToJWT(t *testing.T) {
	a := newAuth(t, Config{JWT: &JWTConfig{Secret: hsSecret}, MaxConcurrent: 1, MaxQueue: -1})
	if a.limit != nil {
		t.Fatal("JWT authenticator has a lookup limiter")
	}
	const n = 50
	toks := make([]string, n)
	for i := range toks {
		toks[i] = sign(t, jwt.SigningMethodHS256, []byte(hsSecret), userClaims(fmt.Sprintf("u%d", i)), nil)
	}
	var wg sync.WaitGroup
	for i, tok := range toks {
		wg.Go(func() {
			au, err := a.Authenticate(from("192.0.2.9", tok))
			if err != nil || au == nil || au.ID != fmt.Sprintf("u%d", i) {
				t.Errorf("token %d: %+v, %v", i, au, err)
			}
		})
	}
	wg.Wait()
	if s := a.Stats(); s.Limited != 0 || s.Misses != n {
		t.Fatalf("stats = %+v", s)
	}
}

func TestLimitDefaultsAndTransport(t *testing.T) {
	n, err := (&Config{URL: "http://127.0.0.1/me"}).normalize()
	if err != nil {
		t.Fatal(err)
	}
	if n.MaxConcurrent != 32 || n.MaxQueue != 32 || n.QueueTimeout != time.Second || n.MaxPerClient != 8 {
		t.Fatalf("defaults: max_concurrent %d, queue %d, queue timeout %v, per client %d",
			n.MaxConcurrent, n.MaxQueue, n.QueueTimeout, n.MaxPerClient)
	}
	if n, _ := (&Config{URL: "http://x", MaxConcurrent: 3}).normalize(); n.MaxPerClient != 1 {
		t.Fatalf("per-client share of 3 slots = %d, want 1", n.MaxPerClient)
	}

	a := newAuth(t, Config{URL: "http://127.0.0.1/me", MaxConcurrent: 7})
	if tr := a.transport; tr.MaxConnsPerHost != 7 || tr.MaxIdleConnsPerHost != 7 {
		t.Fatalf("transport: %d conns, %d idle per host; want 7", tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost)
	}
	u := newAuth(t, Config{URL: "http://127.0.0.1/me", MaxConcurrent: -1})
	if u.limit != nil || u.transport.MaxConnsPerHost != 0 {
		t.Fatal("MaxConcurrent < 0 still limits")
	}
}

func TestLimitRefusalsLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.WarnLevel)
		l := &refusalLog{log: zap.New(core)}
		l.note("203.0.113.66", &LimitError{perClient: true})
		for range 5 {
			l.note("203.0.113.66", &LimitError{perClient: true})
		}
		l.note("192.0.2.1", &LimitError{})
		if n := logs.Len(); n != 1 {
			t.Fatalf("%d log lines for 7 refusals within %v, want 1", n, refusalLogEvery)
		}
		time.Sleep(refusalLogEvery)
		l.note("203.0.113.66", &LimitError{perClient: true})
		entries := logs.TakeAll()
		if len(entries) != 2 {
			t.Fatalf("%d log lines after %v, want 2", len(entries), refusalLogEvery)
		}
		first, second := entries[0].ContextMap(), entries[1].ContextMap()
		if ips := first["refused_by_ip"].(map[string]any); ips["203.0.113.66"] != uint64(1) {
			t.Fatalf("first line %v", first)
		}
		ips := second["refused_by_ip"].(map[string]any)
		if ips["203.0.113.66"] != uint64(6) || ips["192.0.2.1"] != uint64(1) ||
			second["over_ip_share"] != uint64(6) || second["all_slots_busy"] != uint64(1) {
			t.Fatalf("second line %v", second)
		}
	})
}

package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestURLRecord(t *testing.T) {
	ep := newEndpoint(t, usersEndpoint)
	a := newAuth(t, Config{URL: ep.URL + "/api/me"})

	au, err := a.Authenticate(withToken("good-u1"))
	if err != nil || au == nil {
		t.Fatalf("Authenticate = %v, %v", au, err)
	}
	if au.ID != "u1" || au.Collection != "pbc_users" || au.Identity() != "pbc_users/u1" {
		t.Fatalf("auth = %+v", au)
	}
	if au.Record["email"] != "u@example.com" {
		t.Fatalf("record = %v", au.Record)
	}
	if n, ok := au.Record["age"].(json.Number); !ok || n.String() != "42" {
		t.Fatalf("age = %#v, want json.Number 42", au.Record["age"])
	}
	if got := ep.lastHeader().Get("Authorization"); got != "good-u1" {
		t.Fatalf("endpoint saw Authorization %q", got)
	}
}

func TestURLRecordPath(t *testing.T) {
	// PocketBase's auth-refresh answer: {"token": ..., "record": {...}}.
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{
			"token":  "fresh",
			"record": map[string]any{"id": "u7", "collectionName": "users", "verified": true},
			"data":   map[string]any{"user": map[string]any{"id": "deep", "collectionId": ""}},
		})
	})
	a := newAuth(t, Config{URL: ep.URL, RecordPath: "record"})
	au, err := a.Authenticate(withToken("tok"))
	if err != nil || au == nil {
		t.Fatalf("Authenticate = %v, %v", au, err)
	}
	if au.ID != "u7" || au.Collection != "users" || au.Record["verified"] != true {
		t.Fatalf("auth = %+v (collection falls back to collectionName)", au)
	}
	if _, ok := au.Record["token"]; ok {
		t.Fatalf("record holds the envelope: %v", au.Record)
	}

	b := newAuth(t, Config{URL: ep.URL, RecordPath: "data.user"})
	au, err = b.Authenticate(withToken("tok"))
	if err != nil || au == nil || au.ID != "deep" || au.Collection != "" {
		t.Fatalf("nested path: %+v, %v", au, err)
	}

	// The whole body has no string id: "" is the top level.
	c := newAuth(t, Config{URL: ep.URL})
	mustUnavailable(t, c, withToken("tok"), "tok", "no auth record at the top level")
}

func TestURLRefusedIsGuest(t *testing.T) {
	ep := newEndpoint(t, usersEndpoint)
	a := newAuth(t, Config{URL: ep.URL})
	mustAuth(t, a, withToken("expired-token"), "") // 401
	mustAuth(t, a, withToken("forbidden"), "")     // 403
	if s := a.Stats(); s.Refused != 2 || s.Errors != 0 || s.Misses != 2 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestURLErrors(t *testing.T) {
	const secret = "s3cr3t-token-value"
	big := strings.Repeat("x", maxBody+10)
	cases := []struct {
		name    string
		path    string
		handle  http.HandlerFunc
		wantSub string
	}{
		{"500", "", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, "answered 500 Internal Server Error"},
		{"502 echoing the token", "", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(502)
			fmt.Fprint(w, "bad gateway for "+r.Header.Get("Authorization"))
		}, "answered 502 Bad Gateway"},
		{"404", "", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, "answered 404 Not Found"},
		{"400", "", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(400) }, "answered 400 Bad Request"},
		{"redirect to login", "", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/login", http.StatusFound)
		}, "answered 302 Found (redirects are not followed"},
		{"garbage", "", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "<html>hello "+secret) }, "not JSON"},
		{"empty body", "", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }, "not JSON: empty body"},
		{"trailing data", "", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"id":"a"} {"id":"b"}`) }, "data after the JSON value"},
		{"array", "", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `[{"id":"a"}]`) }, "not an object"},
		{"string", "", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `"a"`) }, "not an object"},
		{"missing id", "", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"email":"x"}`) }, "no auth record at the top level"},
		{"numeric id", "", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"id":5}`) }, "no auth record"},
		{"empty id", "", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"id":""}`) }, "no auth record"},
		{"missing record", "record", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"id":"a","token":"x"}`) }, `auth endpoint returned no auth record at "record"`},
		{"record not an object", "record", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"record":"u1"}`) }, `no auth record at "record"`},
		{"too large", "", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, `{"id":"a","pad":%q}`, big) }, "larger than 1 MiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ep := newEndpoint(t, tc.handle)
			a := newAuth(t, Config{URL: ep.URL + "/me?key=hidden", RecordPath: tc.path})
			err := mustUnavailable(t, a, withToken("Bearer "+secret), secret, tc.wantSub)
			if strings.Contains(err.Error(), "hidden") {
				t.Fatalf("error %q shows the endpoint's query string", err)
			}
			if !strings.Contains(err.Error(), ep.URL+"/me") {
				t.Fatalf("error %q does not name the endpoint", err)
			}
			if s := a.Stats(); s.Errors != 1 || s.Misses != 1 {
				t.Fatalf("stats = %+v", s)
			}
		})
	}
}

func TestURLTimeout(t *testing.T) {
	const secret = "tok-timeout"
	release := make(chan struct{})
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	a := newAuth(t, Config{URL: ep.URL, Timeout: 150 * time.Millisecond})
	start := time.Now()
	mustUnavailable(t, a, withToken(secret), secret, "timed out after 150ms")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Timeout not applied: took %v", d)
	}
}

func TestURLConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	a := newAuth(t, Config{URL: "http://" + addr + "/me"})
	mustUnavailable(t, a, withToken("tok-refused"), "tok-refused", "failed")
	// Errors are not cached: the next call tries again (and fails again).
	mustUnavailable(t, a, withToken("tok-refused"), "tok-refused", "failed")
	if s := a.Stats(); s.Errors != 2 || s.Misses != 2 || s.Hits != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestURLForwardsOnlyConfiguredHeaders(t *testing.T) {
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Cookie"), "session=abc") {
			writeJSON(w, 200, map[string]any{"id": "c1"})
			return
		}
		w.WriteHeader(401)
	})
	cookies := newAuth(t, Config{URL: ep.URL, Headers: []string{"cookie"}})
	mustAuth(t, cookies, post("Cookie", "theme=dark; session=abc", "Authorization", "Bearer xyz", "X-Other", "1"), "c1")
	h := ep.lastHeader()
	if got := h.Get("Cookie"); got != "theme=dark; session=abc" {
		t.Fatalf("Cookie forwarded as %q", got)
	}
	if h.Get("Authorization") != "" || h.Get("X-Other") != "" {
		t.Fatalf("unconfigured headers forwarded: %v", h)
	}
	if got := h.Get("Accept"); got != "application/json" {
		t.Fatalf("Accept = %q", got)
	}
	// A POST with only unconfigured credentials is a guest without a lookup.
	before := ep.count()
	mustAuth(t, cookies, post("Authorization", "Bearer xyz"), "")
	if ep.count() != before {
		t.Fatal("lookup made for a request without the configured header")
	}

	// Default: Authorization, forwarded exactly as received (Bearer kept), nothing else.
	def := newAuth(t, Config{URL: ep.URL})
	mustAuth(t, def, post("Authorization", "Bearer xyz", "Cookie", "session=abc"), "")
	h = ep.lastHeader()
	if got := h.Get("Authorization"); got != "Bearer xyz" {
		t.Fatalf("Authorization forwarded as %q", got)
	}
	if h.Get("Cookie") != "" {
		t.Fatalf("Cookie forwarded with the default config: %v", h)
	}
}

func TestNoCredentialsIsGuestWithoutLookup(t *testing.T) {
	ep := newEndpoint(t, usersEndpoint)
	a := newAuth(t, Config{URL: ep.URL})
	for _, r := range []*http.Request{post(), withToken(""), withToken("Bearer "), withToken("  bearer\t "), withToken("BEARER")} {
		mustAuth(t, a, r, "")
	}
	if ep.count() != 0 {
		t.Fatalf("%d lookups for requests without credentials", ep.count())
	}
	if s := a.Stats(); s != (Stats{}) {
		t.Fatalf("stats = %+v, want zero", s)
	}
	if cacheLen(a) != 0 {
		t.Fatal("something was cached for a guest without credentials")
	}
}

func TestSequentialCallsLookUpOnce(t *testing.T) {
	ep := newEndpoint(t, usersEndpoint)
	a := newAuth(t, Config{URL: ep.URL})
	for range 100 {
		mustAuth(t, a, withToken("good-u1"), "u1")
	}
	if n := ep.count(); n != 1 {
		t.Fatalf("%d requests to the endpoint, want 1", n)
	}
	if s := a.Stats(); s.Hits != 99 || s.Misses != 1 {
		t.Fatalf("stats = %+v", s)
	}
	// The Bearer prefix is part of what is forwarded, so it is another credential.
	mustAuth(t, a, withToken("Bearer good-u1"), "u1")
	if n := ep.count(); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestConcurrentCallsShareOneLookup(t *testing.T) {
	const callers = 100
	release := make(chan struct{})
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		usersEndpoint(w, r)
	})
	a := newAuth(t, Config{URL: ep.URL})
	var waiting sync.WaitGroup
	waiting.Add(callers)
	a.testHookWaiting = waiting.Done

	var done sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		done.Add(1)
		go func() {
			defer done.Done()
			au, err := a.Authenticate(withToken("good-u1"))
			switch {
			case err != nil:
				errs <- err
			case au == nil || au.ID != "u1":
				errs <- fmt.Errorf("got %+v", au)
			}
		}()
	}
	waiting.Wait() // all 100 wait on a lookup the endpoint is holding
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := ep.count(); n != 1 {
		t.Fatalf("%d requests to the endpoint for %d concurrent calls, want 1", n, callers)
	}
	if s := a.Stats(); s.Misses != 1 || s.Shared != callers-1 || s.Hits != 0 {
		t.Fatalf("stats = %+v", s)
	}
	mustAuth(t, a, withToken("good-u1"), "u1")
	if n := ep.count(); n != 1 {
		t.Fatalf("the shared lookup was not cached: %d requests", n)
	}
}

func TestRefusalsCachedShorter(t *testing.T) {
	ep := newEndpoint(t, usersEndpoint)
	a := newAuth(t, Config{URL: ep.URL, CacheTTL: time.Hour, NegativeTTL: 300 * time.Millisecond})
	mustAuth(t, a, withToken("good-u1"), "u1")
	mustAuth(t, a, withToken("bad"), "")
	mustAuth(t, a, withToken("good-u1"), "u1")
	mustAuth(t, a, withToken("bad"), "")
	if n := ep.count(); n != 2 {
		t.Fatalf("%d requests, want 2 (both outcomes cached)", n)
	}
	time.Sleep(450 * time.Millisecond)
	mustAuth(t, a, withToken("good-u1"), "u1")
	if n := ep.count(); n != 2 {
		t.Fatalf("the record expired with the refusal TTL: %d requests", n)
	}
	mustAuth(t, a, withToken("bad"), "")
	if n := ep.count(); n != 3 {
		t.Fatalf("the refusal outlived NegativeTTL: %d requests, want 3", n)
	}
}

func TestNegativeTTLDisablesCaching(t *testing.T) {
	ep := newEndpoint(t, usersEndpoint)
	a := newAuth(t, Config{URL: ep.URL, CacheTTL: -1, NegativeTTL: -1})
	for range 3 {
		mustAuth(t, a, withToken("good-u1"), "u1")
		mustAuth(t, a, withToken("bad"), "")
	}
	if n := ep.count(); n != 6 {
		t.Fatalf("%d requests, want 6 with caching off", n)
	}
}

func TestErrorsNotCached(t *testing.T) {
	var fail sync.Mutex
	failing := true
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		fail.Lock()
		f := failing
		fail.Unlock()
		if f {
			w.WriteHeader(503)
			return
		}
		usersEndpoint(w, r)
	})
	a := newAuth(t, Config{URL: ep.URL})
	mustUnavailable(t, a, withToken("good-u1"), "good-u1", "503")
	fail.Lock()
	failing = false
	fail.Unlock()
	mustAuth(t, a, withToken("good-u1"), "u1")
	if n := ep.count(); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
	if s := a.Stats(); s.Errors != 1 || s.Misses != 2 || s.Refused != 0 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestCacheStaysBounded(t *testing.T) {
	const size, tokens, workers = 100, 10000, 8
	ep := newEndpoint(t, usersEndpoint)
	a := newAuth(t, Config{URL: ep.URL, CacheSize: size})

	next := make(chan int)
	var wg sync.WaitGroup
	var failed sync.Once
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				id := fmt.Sprintf("u%d", i)
				au, err := a.Authenticate(withToken("good-" + id))
				if err != nil || au == nil || au.ID != id {
					failed.Do(func() { t.Errorf("token %d: %+v, %v", i, au, err) })
				}
			}
		}()
	}
	for i := range tokens {
		next <- i
	}
	close(next)
	wg.Wait()

	if n := ep.count(); n != tokens {
		t.Fatalf("%d requests for %d distinct tokens", n, tokens)
	}
	entries, rev := cacheLen(a), reverseLen(a)
	t.Logf("after %d distinct tokens: %d cache entries, %d reverse-map entries (cache size %d)", tokens, entries, rev, size)
	if entries == 0 || entries > size {
		t.Fatalf("%d cache entries, want 1..%d", entries, size)
	}
	if rev > entries {
		t.Fatalf("reverse map holds %d entries for %d cached ones: it is not bounded by the cache", rev, entries)
	}
	// Every reverse-map entry is live in the cache.
	a.revMu.Lock()
	var live []*entry
	for _, set := range a.byIdentity {
		for e := range set {
			live = append(live, e)
		}
	}
	a.revMu.Unlock()
	for _, e := range live {
		if got, ok := a.cache.Get(e.key); !ok || got != e {
			t.Fatalf("reverse map entry for %s is not in the cache", e.auth.Identity())
		}
	}
}

func TestForget(t *testing.T) {
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		// Two tokens of user u1 (two devices), one of u2.
		switch stripBearer(r.Header.Get("Authorization")) {
		case "phone", "laptop":
			writeJSON(w, 200, map[string]any{"id": "u1", "collectionId": "pbc_users"})
		case "other":
			writeJSON(w, 200, map[string]any{"id": "u2", "collectionId": "pbc_users"})
		default:
			w.WriteHeader(401)
		}
	})
	a := newAuth(t, Config{URL: ep.URL})
	for range 2 {
		mustAuth(t, a, withToken("phone"), "u1")
		mustAuth(t, a, withToken("laptop"), "u1")
		mustAuth(t, a, withToken("other"), "u2")
	}
	if n := ep.count(); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
	if r := reverseLen(a); r != 3 {
		t.Fatalf("reverse map holds %d entries, want 3", r)
	}

	a.Forget("pbc_users/u1")
	if r := reverseLen(a); r != 1 {
		t.Fatalf("reverse map holds %d entries after Forget, want 1", r)
	}
	mustAuth(t, a, withToken("other"), "u2")
	if n := ep.count(); n != 3 {
		t.Fatalf("Forget of u1 dropped u2: %d requests", n)
	}
	mustAuth(t, a, withToken("phone"), "u1")
	mustAuth(t, a, withToken("laptop"), "u1")
	if n := ep.count(); n != 5 {
		t.Fatalf("%d requests after Forget, want 5 (both u1 tokens looked up again)", n)
	}
	mustAuth(t, a, withToken("phone"), "u1")
	if n := ep.count(); n != 5 {
		t.Fatalf("not cached again after Forget: %d requests", n)
	}
	a.Forget("pbc_users/nobody") // unknown identity: no-op
}

func TestForgetDuringLookupIsNotCached(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case started <- struct{}{}:
			<-release
		default:
		}
		writeJSON(w, 200, map[string]any{"id": "u1", "collectionId": "pbc_users", "name": "old"})
	})
	a := newAuth(t, Config{URL: ep.URL})
	done := make(chan error, 1)
	go func() {
		au, err := a.Authenticate(withToken("tok"))
		if err == nil && (au == nil || au.ID != "u1") {
			err = fmt.Errorf("got %+v", au)
		}
		done <- err
	}()
	<-started
	a.Forget("pbc_users/u1") // the record changed while its lookup was running
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mustAuth(t, a, withToken("tok"), "u1")
	if n := ep.count(); n != 2 {
		t.Fatalf("%d requests, want 2: a lookup that raced Forget must not be cached", n)
	}
	mustAuth(t, a, withToken("tok"), "u1")
	if n := ep.count(); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestCallerCanceledWhileWaiting(t *testing.T) {
	release := make(chan struct{})
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		usersEndpoint(w, r)
	})
	a := newAuth(t, Config{URL: ep.URL})
	ctx, cancel := context.WithCancel(context.Background())
	r := withToken("good-u1").WithContext(ctx)
	a.testHookWaiting = cancel
	au, err := a.Authenticate(r)
	if err == nil || au != nil || !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Authenticate = %+v, %v; want context.Canceled", au, err)
	}
	a.testHookWaiting = nil
	close(release)
	// The lookup went on without the canceled caller, and was cached.
	waitFor(t, "the lookup to be cached", func() bool { _, ok := a.get(a.credentials(withToken("good-u1")).key); return ok })
	mustAuth(t, a, withToken("good-u1"), "u1")
	if n := ep.count(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

func TestStats(t *testing.T) {
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		if stripBearer(r.Header.Get("Authorization")) == "boom" {
			w.WriteHeader(500)
			return
		}
		usersEndpoint(w, r)
	})
	a := newAuth(t, Config{URL: ep.URL})
	mustAuth(t, a, withToken("good-a"), "a")   // miss
	mustAuth(t, a, withToken("good-a"), "a")   // hit
	mustAuth(t, a, withToken("bad"), "")       // miss, refused
	mustAuth(t, a, withToken("bad"), "")       // hit (cached refusal)
	mustAuth(t, a, withToken("forbidden"), "") // miss, refused
	mustUnavailable(t, a, withToken("boom"), "boom", "500")
	mustAuth(t, a, post(), "") // no credentials: not counted
	want := Stats{Hits: 2, Misses: 4, Refused: 2, Errors: 1}
	if s := a.Stats(); s != want {
		t.Fatalf("stats = %+v, want %+v", s, want)
	}
}

func TestCloseThenAuthenticate(t *testing.T) {
	ep := newEndpoint(t, usersEndpoint)
	a, err := New(Config{URL: ep.URL})
	if err != nil {
		t.Fatal(err)
	}
	mustAuth(t, a, withToken("good-u1"), "u1")
	a.Close()
	a.Close() // idempotent
	// Still answers, without a cache.
	mustAuth(t, a, withToken("good-u1"), "u1")
	if n := ep.count(); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
	a.Forget("pbc_users/u1")
}

func TestHTTPClientOption(t *testing.T) {
	ep := newEndpoint(t, usersEndpoint)
	var used atomic.Int64
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used.Add(1)
		return ep.Client().Transport.RoundTrip(r)
	})}
	a := newAuth(t, Config{URL: ep.URL, HTTPClient: client})
	mustAuth(t, a, withToken("good-u1"), "u1")
	if used.Load() != 1 {
		t.Fatalf("HTTPClient used %d times, want 1", used.Load())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

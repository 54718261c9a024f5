package auth

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// endpoint is a site's auth endpoint: it counts requests and records their headers.
type endpoint struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	headers  []http.Header
}

func newEndpoint(t testing.TB, handle http.HandlerFunc) *endpoint {
	t.Helper()
	e := &endpoint{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		e.mu.Lock()
		e.headers = append(e.headers, r.Header.Clone())
		e.mu.Unlock()
		handle(w, r)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) count() int64 { return e.requests.Load() }

func (e *endpoint) lastHeader() http.Header {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.headers) == 0 {
		return nil
	}
	return e.headers[len(e.headers)-1]
}

// usersEndpoint answers like a site's "who am I": a token "good-<id>" is the
// user <id> of collection pbc_users, "forbidden" gets 403, anything else 401.
func usersEndpoint(w http.ResponseWriter, r *http.Request) {
	tok := stripBearer(r.Header.Get("Authorization"))
	switch {
	case strings.HasPrefix(tok, "good-"):
		writeJSON(w, 200, map[string]any{
			"id": strings.TrimPrefix(tok, "good-"), "collectionId": "pbc_users",
			"collectionName": "users", "email": "u@example.com", "age": 42,
		})
	case tok == "forbidden":
		writeJSON(w, 403, map[string]any{"message": "forbidden"})
	default:
		writeJSON(w, 401, map[string]any{"message": "unauthorized"})
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func newAuth(t testing.TB, c Config) *Authenticator {
	t.Helper()
	a, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(a.Close)
	return a
}

// post is a subscription POST carrying the given header pairs.
func post(kv ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/realtime", nil)
	for i := 0; i+1 < len(kv); i += 2 {
		r.Header.Add(kv[i], kv[i+1])
	}
	return r
}

func withToken(tok string) *http.Request { return post("Authorization", tok) }

func mustAuth(t testing.TB, a *Authenticator, r *http.Request, wantID string) {
	t.Helper()
	au, err := a.Authenticate(r)
	if err != nil {
		t.Fatalf("Authenticate: unexpected error %v", err)
	}
	if wantID == "" {
		if au != nil {
			t.Fatalf("Authenticate = %+v, want guest", au)
		}
		return
	}
	if au == nil {
		t.Fatalf("Authenticate = guest, want %q", wantID)
	}
	if au.ID != wantID {
		t.Fatalf("Authenticate ID = %q, want %q", au.ID, wantID)
	}
}

func mustUnavailable(t testing.TB, a *Authenticator, r *http.Request, secret, wantSub string) error {
	t.Helper()
	au, err := a.Authenticate(r)
	if err == nil {
		t.Fatalf("Authenticate = %+v, nil; want an error", au)
	}
	if au != nil {
		t.Fatalf("Authenticate returned a record with the error: %+v", au)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %q does not wrap ErrUnavailable", err)
	}
	if secret != "" && strings.Contains(err.Error(), secret) {
		t.Fatalf("error %q leaks the credential", err)
	}
	if !strings.Contains(err.Error(), wantSub) {
		t.Fatalf("error %q does not mention %q", err, wantSub)
	}
	return err
}

// waitFor polls cond; the bound only keeps a broken test from hanging.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// cacheLen counts the entries ristretto holds.
func cacheLen(a *Authenticator) int {
	n := 0
	a.cache.IterValues(func(*entry) bool { n++; return false })
	return n
}

// reverseLen counts the entries of the identity reverse map.
func reverseLen(a *Authenticator) int {
	a.revMu.Lock()
	defer a.revMu.Unlock()
	n := 0
	for _, set := range a.byIdentity {
		n += len(set)
	}
	return n
}

//go:build linux

package bench

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
)

// AuthServer is the site's own auth endpoint that our module asks (workload h):
// GET /auth with the subscriber's Authorization answers {"record":{...}} for
// a known token and 401 otherwise, like PocketBase's auth-refresh.
type AuthServer struct {
	URL     string
	Tokens  []string // by user index
	UserIDs []string
	Lookups atomic.Int64

	byToken map[string]string
	srv     *http.Server
}

// StartAuthServer serves n users on a free loopback port.
func StartAuthServer(n int) (*AuthServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &AuthServer{URL: "http://" + l.Addr().String() + "/auth", byToken: map[string]string{}}
	for i := range n {
		id := fmt.Sprintf("u%014d", i) // 15 characters, like a PocketBase id
		tok := "bench-token-" + id
		a.UserIDs, a.Tokens = append(a.UserIDs, id), append(a.Tokens, tok)
		a.byToken[tok] = id
	}
	a.srv = &http.Server{Handler: a}
	go a.srv.Serve(l)
	return a, nil
}

func (a *AuthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.Lookups.Add(1)
	tok := strings.TrimSpace(r.Header.Get("Authorization"))
	if len(tok) > 7 && strings.EqualFold(tok[:7], "bearer ") {
		tok = tok[7:]
	}
	id, ok := a.byToken[tok]
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path != "/auth" || !ok {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"data":{},"message":"The request requires valid record authorization token.","status":401}`))
		return
	}
	json.NewEncoder(w).Encode(map[string]any{
		"token":  tok,
		"record": map[string]any{"id": id, "collectionId": "_pb_users_auth_", "collectionName": "users"},
	})
}

// Close stops the server.
func (a *AuthServer) Close() { a.srv.Close() }

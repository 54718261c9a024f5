package handler

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/broker"
)

// busyError is what auth.LimitError offers the handler: a RetryAfter method.
type busyError struct{ after time.Duration }

func (e busyError) Error() string             { return "auth: too many lookups in flight" }
func (e busyError) RetryAfter() time.Duration { return e.after }

// An auth lookup refused by the concurrency limit is PocketBase's 503 plus
// Retry-After; other lookup failures are the same 503 without it.
func TestSubscribeAuthLimitedRetryAfter(t *testing.T) {
	env := newEnv(t, nil, func(h *Handler) {
		h.Authenticate = func(r *http.Request) (*broker.Auth, error) {
			switch r.Header.Get("Authorization") {
			case "busy":
				return nil, fmt.Errorf("wrapped: %w", busyError{after: 1500 * time.Millisecond})
			case "busy-short":
				return nil, busyError{after: time.Millisecond}
			}
			return nil, errors.New("auth service unreachable")
		}
	})
	unavailable := pbError(503, "The authentication service is unavailable, please try again later.", "")
	s := env.openStream(nil)
	defer s.Close()
	for _, tc := range []struct{ token, retryAfter string }{{"busy", "2"}, {"busy-short", "1"}, {"down", ""}} {
		r := env.postJSON(`{"clientId":"`+s.id+`","subscriptions":["a"]}`, map[string]string{"Authorization": tc.token})
		if r.status != http.StatusServiceUnavailable || r.body != unavailable {
			t.Fatalf("%s: %d %s", tc.token, r.status, r.body)
		}
		if got := r.header.Get("Retry-After"); got != tc.retryAfter {
			t.Fatalf("%s: Retry-After %q, want %q", tc.token, got, tc.retryAfter)
		}
	}
}

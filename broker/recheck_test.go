package broker

import (
	"sync/atomic"
	"testing"
	"time"
)

// A client signed in through PocketBase's auth-refresh holds a record without
// tokenKey. The first event carrying one cannot be judged: it is delivered as
// a profile edit, then the client is a guest until its credentials are looked
// up again — still valid, it is signed in again (and a later tokenKey change
// is seen directly); revoked (a new password), it stays a guest, as
// PocketBase logs it out.
func TestFirstTokenKeyRechecksCredentials(t *testing.T) {
	t.Parallel()
	for _, valid := range []bool{true, false} {
		b := New("recheck", nil)
		c := mustConnect(t, b)
		var lookups atomic.Int32
		user := &Auth{ID: "u1", Collection: "users", Record: map[string]any{"id": "u1", "collectionName": "users", "name": "Bob"}}
		user.Recheck = func() (*Auth, error) {
			lookups.Add(1)
			if !valid {
				return nil, nil // auth-refresh answered 401
			}
			return &Auth{ID: "u1", Collection: "users", Record: map[string]any{"id": "u1", "collectionName": "users", "name": "Bob 2"}, Recheck: user.Recheck}, nil
		}
		if err := c.ReplaceAuth(user); err != nil {
			t.Fatal(err)
		}
		b.Publish(mustEvent(t, `{"action":"update","record":{"id":"u1","collectionName":"users","name":"Bob 2","tokenKey":"k1"}}`))
		deadline := time.Now().Add(5 * time.Second)
		for lookups.Load() == 0 || valid && c.Auth() == nil {
			if time.Now().After(deadline) {
				t.Fatalf("valid=%v: lookups %d, auth %v", valid, lookups.Load(), c.Auth())
			}
			time.Sleep(time.Millisecond)
		}
		if !valid {
			time.Sleep(20 * time.Millisecond)
			if c.Auth() != nil {
				t.Fatalf("revoked credentials: still signed in as %v", c.Auth())
			}
			continue
		}
		if a := c.Auth(); a.Record["tokenKey"] != "k1" || a.Record["name"] != "Bob 2" {
			t.Fatalf("signed in again with %v; want the looked-up record and the event's tokenKey", a.Record)
		}
		b.Publish(mustEvent(t, `{"action":"update","record":{"id":"u1","collectionName":"users","name":"Bob 2","tokenKey":"k1"}}`))
		if c.Auth() == nil || lookups.Load() != 1 {
			t.Fatalf("same tokenKey again: auth %v after %d lookups; want signed in, no new lookup", c.Auth(), lookups.Load())
		}
		b.Publish(mustEvent(t, `{"action":"update","record":{"id":"u1","collectionName":"users","name":"Bob 2","tokenKey":"k2"}}`))
		if c.Auth() != nil {
			t.Fatal("a changed tokenKey did not log the client out")
		}
	}
}

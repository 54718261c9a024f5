package broker

import (
	"encoding/json"
	"errors"
)

// Auth is the identity a client proved with its last subscription POST.
type Auth struct {
	ID         string
	Collection string // collection id or name, as the auth record gives it
	Record     map[string]any
	Superuser  bool
	// Recheck looks the client's credentials up again (nil: it cannot be
	// done). The broker uses it when an event may have invalidated them and
	// it cannot tell: the first tokenKey it sees for a record that came
	// without one (PocketBase's auth-refresh never returns it).
	Recheck func() (*Auth, error) `json:"-"`
}

// Identity is what makes two auth records the same user (id and collection).
func (a *Auth) Identity() string {
	if a == nil {
		return ""
	}
	return a.Collection + "/" + a.ID
}

// SameIdentity compares by id and collection, as PocketBase's isSameAuth.
func SameIdentity(a, b *Auth) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.ID == b.ID && a.Collection == b.Collection
}

// Access decides who sees what. A nil Access lets everyone see everything.
// Implementations must be safe for concurrent use; the broker memoizes their
// answers per event and distinct identity, so they run once per identity, not per client.
type Access interface {
	// CanSubscribe returns an error (shown to the client as 403) when auth may not subscribe to topic.
	CanSubscribe(auth *Auth, topic string) error
	// CanReceive applies the collection's list (KindList) or view (KindView)
	// rule, then the subscription's options (query.filter); opts is nil for a
	// topic without options. Rules may read opts (@request.query.*, @request.headers.*).
	CanReceive(auth *Auth, ev *Event, kind TopicKind, opts *Options) bool
	// PickFields applies a subscription's options.query.fields; nil means no picking.
	PickFields() FieldPicker
}

// ErrAuthMismatch refuses a subscription POST that would switch user or downgrade.
var ErrAuthMismatch = errors.New("the current and the previous request authorization don't match")

// ReplaceAuth sets the client's auth as PocketBase's subscription POST does:
// guest to guest, guest to auth (an upgrade) and auth to the same auth (fresh
// record) are allowed; switching to another user or back to guest is refused.
func (c *Client) ReplaceAuth(a *Auth) error {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if old := c.auth.Load(); old != nil && !SameIdentity(old.auth, a) {
		return ErrAuthMismatch
	}
	c.setAuthLocked(a)
	return nil
}

// authState pairs an auth record with its identity and its fingerprint,
// computed once, so the publish path can key rule results without allocating.
type authState struct {
	auth     *Auth
	identity string
	// fingerprint is everything a rule can read of the auth record: its
	// superuser status and its whole content. Rule answers are shared only
	// between clients with equal fingerprints, never merely the same id.
	fingerprint string
}

func newAuthState(a *Auth) *authState {
	return &authState{auth: a, identity: a.Identity(), fingerprint: authFingerprint(a)}
}

func authFingerprint(a *Auth) string {
	rec, err := json.Marshal(a.Record) // map keys sorted: equal records, equal text
	if err != nil {
		return "\x00unique:" + newClientID() // cannot compare: share with nobody
	}
	su := "0"
	if a.Superuser {
		su = "1"
	}
	return su + a.Collection + "/" + a.ID + "\x00" + string(rec)
}

// Auth is the client's current auth record, nil for a guest.
func (c *Client) Auth() *Auth {
	if st := c.auth.Load(); st != nil {
		return st.auth
	}
	return nil
}

// identity is "" for a guest.
func (c *Client) identity() string {
	if st := c.auth.Load(); st != nil {
		return st.identity
	}
	return ""
}

func (c *Client) isSuperuser() bool {
	a := c.Auth()
	return a != nil && a.Superuser
}

// fingerprint is "" for a guest; see authState.
func (c *Client) fingerprint() string {
	if st := c.auth.Load(); st != nil {
		return st.fingerprint
	}
	return ""
}

// SetAuth replaces the client's auth record unconditionally (nil = guest).
func (c *Client) SetAuth(a *Auth) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	c.setAuthLocked(a)
}

func (c *Client) setAuthLocked(a *Auth) {
	old := c.Auth()
	if a == nil {
		c.auth.Store(nil)
	} else {
		c.auth.Store(newAuthState(a))
	}
	if c.isClosed() {
		a = nil // a disconnected client must not re-enter the index
	}
	c.broker.identities.move(c, old, a)
}

// DenyAll is the Access of a broker whose configuration is not committed yet:
// nobody may subscribe to anything and nobody receives anything.
var DenyAll Access = denyAll{}

type denyAll struct{}

var errNotReady = errors.New("the realtime configuration is still loading, retry shortly")

func (denyAll) CanSubscribe(*Auth, string) error                   { return errNotReady }
func (denyAll) CanReceive(*Auth, *Event, TopicKind, *Options) bool { return false }
func (denyAll) PickFields() FieldPicker                            { return nil }

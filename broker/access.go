package broker

import "errors"

// Auth is the identity a client proved with its last subscription POST.
type Auth struct {
	ID         string
	Collection string // collection id or name, as the auth record gives it
	Record     map[string]any
	Superuser  bool
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
	// CanReceive applies the collection's list (KindList) or view (KindView) rule.
	CanReceive(auth *Auth, ev *Event, kind TopicKind) bool
	// Filter applies a subscription's options (query.filter) after the rule passed.
	Filter(auth *Auth, ev *Event, opts *Options) bool
	// PickFields applies a subscription's options.query.fields; nil means no picking.
	PickFields() FieldPicker
}

// ErrAuthMismatch refuses a subscription POST that would switch user or downgrade.
var ErrAuthMismatch = errors.New("the current and the previous request authorization don't match")

// ReplaceAuth sets the client's auth as PocketBase's subscription POST does:
// guest to guest, guest to auth (an upgrade) and auth to the same auth (fresh
// record) are allowed; switching to another user or back to guest is refused.
func (c *Client) ReplaceAuth(a *Auth) error {
	for {
		old := c.auth.Load()
		if old != nil && !SameIdentity(old, a) {
			return ErrAuthMismatch
		}
		if c.auth.CompareAndSwap(old, a) {
			return nil
		}
	}
}

package broker

import (
	"sync"
)

// identityIndex finds the clients authenticated as one auth record, so an
// event about that record can refresh (or, on delete, drop) their auth.
type identityIndex struct {
	mu sync.Mutex
	m  map[string]map[*Client]struct{}
}

func (ix *identityIndex) move(c *Client, from, to *Auth) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for _, key := range recordKeys(from) {
		if set := ix.m[key]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(ix.m, key)
			}
		}
	}
	for _, key := range recordKeys(to) {
		set := ix.m[key]
		if set == nil {
			set = make(map[*Client]struct{}, 1)
			ix.m[key] = set
		}
		set[c] = struct{}{}
	}
}

// recordKeys are the "collection/id" strings an event about a's record may
// carry: by the collection the identity names, and by the record's own
// collectionId and collectionName (events may give either).
func recordKeys(a *Auth) []string {
	if a == nil {
		return nil
	}
	keys := make([]string, 0, 3)
	add := func(col string) {
		if col == "" {
			return
		}
		k := col + "/" + a.ID
		for _, have := range keys {
			if have == k {
				return
			}
		}
		keys = append(keys, k)
	}
	add(a.Collection)
	for _, field := range []string{"collectionId", "collectionName"} {
		if col, ok := a.Record[field].(string); ok {
			add(col)
		}
	}
	return keys
}

func (ix *identityIndex) clients(identity string) []*Client {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	set := ix.m[identity]
	if len(set) == 0 {
		return nil
	}
	out := make([]*Client, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	return out
}

// refreshAuth applies an event about an auth record to the clients holding it,
// as PocketBase does: an update stores the fresh record (rules see the new
// fields), a delete makes them guests; their streams stay open either way.
func (b *Broker) refreshAuth(ev *Event) {
	keys := [2]string{ev.Collection + "/" + ev.RecordID}
	if ev.CollectionID != "" && ev.CollectionID != ev.Collection {
		keys[1] = ev.CollectionID + "/" + ev.RecordID
	}
	p := b.Policy()
	seen := map[*Client]bool{}
	for _, key := range keys {
		if key == "" {
			continue
		}
		for _, c := range b.identities.clients(key) {
			if seen[c] {
				continue
			}
			seen[c] = true
			if p.ForgetAuth != nil {
				p.ForgetAuth(c.identity())
			}
			c.refreshAuth(ev, p.Access)
		}
	}
}

func (c *Client) refreshAuth(ev *Event, access Access) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	st := c.auth.Load()
	if st == nil {
		return
	}
	if ev.Action == ActionDelete {
		c.setAuthLocked(nil)
		return
	}
	fresh := &Auth{ID: st.auth.ID, Collection: st.auth.Collection, Record: ev.Record}
	c.broker.identities.move(c, st.auth, fresh)
	if su, ok := access.(interface{ IsSuperuser(*Auth) bool }); ok {
		fresh.Superuser = su.IsSuperuser(fresh)
	} else {
		fresh.Superuser = st.auth.Superuser
	}
	c.auth.Store(&authState{auth: fresh, identity: st.identity})
}

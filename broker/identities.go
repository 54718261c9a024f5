package broker

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
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

// authClients are the clients signed in as the record ev is about.
func (b *Broker) authClients(ev *Event) []*Client {
	keys := [2]string{ev.Collection + "/" + ev.RecordID}
	if ev.CollectionID != "" && ev.CollectionID != ev.Collection {
		keys[1] = ev.CollectionID + "/" + ev.RecordID
	}
	var out []*Client
	for _, key := range keys {
		if key == "" {
			continue
		}
		for _, c := range b.identities.clients(key) {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// refreshAuth applies an event about an auth record to the clients holding it,
// as PocketBase does: an update stores the fresh record (rules see the new
// fields), a changed tokenKey or a delete makes them guests; their streams
// stay open. A record too partial to replace the one a client holds (it lacks
// a field rules read through @request.auth.*) ends the client's stream
// instead: it reconnects and its credentials are looked up afresh.
func (b *Broker) refreshAuth(ev *Event) []*Client {
	p := b.Policy()
	clients := b.authClients(ev)
	for _, c := range clients {
		if p.ForgetAuth != nil {
			p.ForgetAuth(c.identity())
		}
		c.refreshAuth(ev, p.Access)
	}
	return clients
}

// checkAuthRecord refuses an update of a signed-in client's auth record that
// lacks what rules read of it: refreshed from it, the client's auth would lose
// fields (a missing "banned" would pass `@request.auth.banned != true`).
func (b *Broker) checkAuthRecord(ev *Event, access Access) error {
	if ev.Action == ActionDelete {
		return nil
	}
	for _, c := range b.authClients(ev) {
		if a := c.Auth(); a != nil {
			if f, missing := missingAuthField(a, ev.Record, access); missing {
				return fmt.Errorf("record.%s is required: clients are signed in as this record and their auth is refreshed from it (send full records)", f)
			}
		}
	}
	return nil
}

// missingAuthField names a field that rules read through @request.auth.* (or
// the tokenKey the client's record had) which rec lacks.
func missingAuthField(old *Auth, rec map[string]any, access Access) (string, bool) {
	if af, ok := access.(interface{ AuthFields() []string }); ok {
		for _, f := range af.AuthFields() {
			if _, ok := rec[f]; !ok {
				return f, true
			}
		}
	}
	if _, had := old.Record["tokenKey"]; had {
		if _, ok := rec["tokenKey"]; !ok {
			return "tokenKey", true
		}
	}
	return "", false
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
	if _, missing := missingAuthField(st.auth, ev.Record, access); missing {
		// Published after CheckEvents passed (the client signed in meanwhile).
		c.setAuthLocked(nil)
		c.Close(ReasonAuthStale)
		return
	}
	if old, had := st.auth.Record["tokenKey"]; had && !reflect.DeepEqual(old, ev.Record["tokenKey"]) {
		c.setAuthLocked(nil) // a new tokenKey invalidates the tokens: PocketBase logs the client out
		return
	}
	_, first := ev.Record["tokenKey"]
	first = first && st.auth.Record["tokenKey"] == nil
	fresh := &Auth{ID: st.auth.ID, Collection: st.auth.Collection, Record: ev.Record}
	c.broker.identities.move(c, st.auth, fresh)
	if su, ok := access.(interface{ IsSuperuser(*Auth) bool }); ok {
		fresh.Superuser = su.IsSuperuser(fresh)
	} else {
		fresh.Superuser = st.auth.Superuser
	}
	fresh.Recheck = st.auth.Recheck
	c.auth.Store(newAuthState(fresh))
	if first {
		// Its record came without a tokenKey (PocketBase's auth-refresh
		// hides it): whether this one is new cannot be told. This event is
		// judged as PocketBase judges a profile edit; then the client is a
		// guest until its credentials are looked up again (recheck).
		c.recheckPending = fresh
	}
}

// recheck makes a client whose record an event could not judge (see
// refreshAuth) a guest until its credentials are looked up again: still
// valid, it is signed in again with the fresh record; revoked (a new
// password), it stays a guest, as PocketBase logs it out.
func (c *Client) recheck() {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	pending := c.recheckPending
	if pending == nil || c.Auth() != pending {
		return
	}
	c.setAuthLocked(nil)
	if pending.Recheck == nil {
		c.recheckPending = nil
		return
	}
	go c.recheckAuth(pending, pending.Record["tokenKey"])
}

// recheckAuth looks up the credentials of dropped again and, when they still
// name the same record and the client is still the guest the drop made it,
// signs it in again; tokenKey is kept so a later change is seen.
func (c *Client) recheckAuth(dropped *Auth, tokenKey any) {
	fresh, err := dropped.Recheck()
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if c.recheckPending != dropped {
		return // signed in again, or rechecked again, meanwhile
	}
	c.recheckPending = nil
	if err != nil || fresh == nil || !SameIdentity(fresh, dropped) || c.Auth() != nil {
		return
	}
	cp := *fresh
	cp.Record = maps.Clone(fresh.Record)
	if cp.Record == nil {
		cp.Record = map[string]any{}
	}
	cp.Record["tokenKey"] = tokenKey
	cp.Recheck = dropped.Recheck
	c.setAuthLocked(&cp)
}

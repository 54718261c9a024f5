package broker

import (
	"context"
	"slices"
	"sync"
	"time"
)

// A client whose stream ended leaves a session behind for resume_window: its
// subscriptions, auth and IP. A GET with its Last-Event-ID from the same IP
// gets the same client back, and every event it missed, once and in order.

type session struct {
	ip     string
	topics []string
	auth   *Auth
	since  uint64 // where to replay from when the client saw no positioned frame
	expiry *time.Timer
}

type sessionStore struct {
	mu sync.Mutex
	m  map[string]*session
	// leaving counts, per client id, streams unregistered whose session is
	// not kept yet; kept (on mu) is broadcast as each is done. A resume that
	// finds neither the live client nor its session waits for them, or it
	// would refuse a client whose drop the server noticed at the same time.
	leaving map[string]int
	kept    *sync.Cond
}

// leave marks id as leaving; called under id's shard lock as it is
// unregistered, so a resume finds the client, its session, or this mark.
func (st *sessionStore) leave(id string) {
	st.mu.Lock()
	if st.leaving == nil {
		st.leaving = make(map[string]int)
		st.kept = sync.NewCond(&st.mu)
	}
	st.leaving[id]++
	st.mu.Unlock()
}

// left ends leave, once id's session is kept (or was not worth keeping).
func (st *sessionStore) left(id string) {
	st.mu.Lock()
	if st.leaving[id]--; st.leaving[id] <= 0 {
		delete(st.leaving, id)
	}
	st.kept.Broadcast()
	st.mu.Unlock()
}

// resumable says whether a stream that ended for reason may be resumed: not
// one an admin disconnected, nor one whose auth could not be kept.
func resumable(reason string) bool {
	return reason != ReasonDisconnected && reason != ReasonAuthStale
}

// keepSession remembers what c leaves behind; called once, as it is unregistered.
func (b *Broker) keepSession(c *Client, topics []string, auth *Auth) {
	window := b.Policy().ResumeWindow
	reason := c.closeReason()
	if reason == ReasonMoved {
		return // another node holds it now, and its session
	}
	if window <= 0 || !resumable(reason) {
		if cl := b.Cluster(); cl != nil {
			cl.DeleteSession(c.id)
		}
		return
	}
	b.shareSession(c, topics, auth)
	s := &session{ip: c.ip, topics: topics, auth: auth, since: c.since}
	st := &b.sessions
	st.mu.Lock()
	defer st.mu.Unlock()
	if old := st.m[c.id]; old != nil {
		old.expiry.Stop()
	}
	st.m[c.id] = s
	s.expiry = time.AfterFunc(window, func() {
		st.mu.Lock()
		if st.m[c.id] == s {
			delete(st.m, c.id)
		}
		st.mu.Unlock()
	})
}

// takeSession removes and returns id's session if it was left from ip.
func (b *Broker) takeSession(id, ip string) *session {
	st := &b.sessions
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.m[id]
	for s == nil && st.leaving[id] > 0 {
		st.kept.Wait()
		s = st.m[id]
	}
	if s == nil || s.ip != ip {
		return nil
	}
	delete(st.m, id)
	s.expiry.Stop()
	return s
}

// catchUpWait bounds how long a resume waits for a transport still catching up.
const catchUpWait = 5 * time.Second

// Resume connects a client that came back with lastEventID (a frame id it
// received). When that id names a session left from ip whose missed records
// the log still holds, the client gets its id, subscriptions and auth back,
// PB_CONNECT says "resumed":true, and every missed record that passes its
// subscriptions and rules is queued once, in order, before live ones.
// Otherwise it is a new client and PB_CONNECT says "resumed":false.
func (b *Broker) Resume(ip, lastEventID string) (c *Client, resumed bool, err error) {
	if id, ok := ParseEventID(lastEventID); ok && id.Position > 0 {
		if cu, ok := b.Transport().(interface {
			CatchUp(ctx context.Context, epoch string, position uint64)
		}); ok {
			// A node that just (re)started may not have read the order up
			// to the client's position yet: give it a moment.
			ctx, cancel := context.WithTimeout(context.Background(), catchUpWait)
			cu.CatchUp(ctx, id.Epoch, id.Position)
			cancel()
		}
	}
	s, from := b.resumeCandidate(ip, lastEventID)
	if s != nil {
		c, resumed, err = b.resume(ip, lastEventID, s, from)
		if err != nil || resumed {
			return c, resumed, err
		}
	}
	c, err = b.connect(ip, newClientID(), b.Transport().Last())
	if err == nil {
		c.enqueue(ownTail(resumeFrame(c.id, false)), 0, 0)
	}
	return c, false, err
}

// resumeCandidate finds the session lastEventID names and the position to replay from.
func (b *Broker) resumeCandidate(ip, lastEventID string) (*session, uint64) {
	id, ok := ParseEventID(lastEventID)
	if !ok || b.Policy().ResumeWindow <= 0 || id.Position > 0 && id.Epoch != b.Epoch() {
		return nil, 0
	}
	if old, live := b.Client(id.ClientID); live {
		if old.ip != ip {
			return nil, 0
		}
		b.Disconnect(old, ReasonClientGone) // the server had not noticed yet: this leaves its session
	}
	s := b.takeSession(id.ClientID, ip)
	if s == nil {
		s = b.takeSharedSession(id.ClientID, ip)
	} else if cl := b.Cluster(); cl != nil {
		cl.DeleteSession(id.ClientID)
	}
	if s == nil {
		return nil, 0
	}
	from := id.Position
	if from == 0 {
		from = s.since // PB_CONNECT was the last frame it saw
	}
	return s, from
}

func (b *Broker) resume(ip, lastEventID string, s *session, from uint64) (*Client, bool, error) {
	id, _ := ParseEventID(lastEventID)
	epoch := b.Epoch()
	b.pubMu.Lock()
	ok := b.Transport().ReadFrom(epoch, from, func(*Record) bool { return false })
	b.pubMu.Unlock()
	if !ok {
		return nil, false, nil
	}
	// Registered without subscriptions, it receives no live record until
	// they are restored below, under pubMu, right before the replay: records
	// published later reach it live, after the replay, and none twice.
	// Its since is from, not the log's end: if PB_CONNECT (whose id is the
	// bare client id) is all it reads before it drops again, it resumes
	// from there and gets the replay below again instead of losing it.
	c, err := b.connect(ip, id.ClientID, from)
	if err != nil {
		return nil, false, err
	}
	var held []*Record
	b.pubMu.Lock()
	ok = b.Transport().ReadFrom(epoch, from, func(r *Record) bool {
		held = append(held, r)
		return true
	})
	if ok {
		c.enqueue(ownTail(resumeFrame(c.id, true)), 0, 0)
		// A subscription POST that reached the new stream first is newer than
		// the session: it wins.
		c.authMu.Lock()
		if c.Auth() == nil {
			c.setAuthLocked(s.auth)
		}
		c.authMu.Unlock()
		if len(c.Subscriptions()) == 0 {
			b.replaceSubscriptions(c, s.topics)
		}
		// Live records after the held ones wait behind the replay, which
		// runs without pubMu: ten thousand resuming clients do not hold up
		// publishing, nor each other. Live deliveries of the held ones (or,
		// on a node behind the client, of ones it had) still to come are
		// dropped.
		through := from
		if len(held) > 0 {
			through = held[len(held)-1].Position
		}
		c.startReplay(through, len(held) > 0)
	}
	b.pubMu.Unlock()
	if !ok { // the log moved past it meanwhile
		c.Close(ReasonDisconnected)
		b.Disconnect(c, ReasonDisconnected)
		return nil, false, nil
	}
	// A few replays at a time: a storm of resuming clients queues their
	// backlogs about as fast as the writers send them, instead of all at once.
	if len(held) > 0 {
		b.replaySlots <- struct{}{}
		for _, r := range held {
			b.replay(c, r)
		}
		<-b.replaySlots
	}
	c.endReplay()
	b.resumedHere(c)
	return c, true, nil
}

// replay queues one logged record for c as fan-out would have (live records
// after it are held back meanwhile: startReplay).
func (b *Broker) replay(c *Client, r *Record) {
	p := b.Policy()
	hooked := b.OnMessageSend.Len() > 0
	send := func(topic string, frame []byte) {
		tail := b.newTail(frame)
		if hooked {
			b.sendHookedAs(c, topic, tail, r.Position, 0, true)
		} else {
			c.enqueueReplayed(tail, r.Position)
		}
		tail.done()
	}
	if m := r.Message; m != nil {
		if !c.HasSubscription(m.Name) || len(m.Clients) > 0 && !slices.Contains(m.Clients, c.id) {
			return
		}
		if p.Access != nil && p.Access.CanSubscribe(c.Auth(), m.Name) != nil {
			return
		}
		send(m.Name, frameTail(m.Name, m.Data))
		return
	}
	ev := r.Event
	mine := c.holdsAuthRecord(ev)
	if mine && ev.Action != ActionDelete {
		c.refreshAuth(ev, p.Access)
	}
	var pick FieldPicker
	var hidden []string
	if p.Access != nil {
		pick = p.Access.PickFields()
		if h, ok := p.Access.(interface{ HiddenFields(*Event) []string }); ok {
			hidden = h.HiddenFields(ev)
		}
	}
	c.subsMu.Lock()
	subs := make([]*topicSubs, 0, len(c.subs))
	for _, ts := range c.subs {
		subs = append(subs, ts)
	}
	c.subsMu.Unlock()
	var basesArr [7]baseKind
	for _, bk := range recordBases(basesArr[:0], ev.Collection, ev.CollectionID, ev.RecordID) {
		for _, ts := range subs {
			if TopicBase(ts.topic) != bk.base {
				continue
			}
			if p.Access != nil && !p.Access.CanReceive(c.Auth(), ev, bk.kind, ts.opts) {
				continue
			}
			var v view
			if ev.hideEmail && !c.seesEmailOf(ev) {
				v |= viewHideEmail
			}
			if len(hidden) > 0 && !c.isSuperuser() {
				v |= viewHideHidden
			}
			send(ts.topic, frameTail(ts.topic, ev.payload(ts.opts.Fields(), pick, v, hidden)))
		}
	}
	if mine && ev.Action == ActionDelete {
		c.refreshAuth(ev, p.Access)
	} else if mine {
		c.recheck()
	}
}

// holdsAuthRecord says whether ev is about the auth record c is signed in as.
func (c *Client) holdsAuthRecord(ev *Event) bool {
	keys := recordKeys(c.Auth())
	return slices.Contains(keys, ev.Collection+"/"+ev.RecordID) ||
		ev.CollectionID != "" && slices.Contains(keys, ev.CollectionID+"/"+ev.RecordID)
}

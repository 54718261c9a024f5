package broker

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Policy is a broker's configuration. A config reload swaps it atomically;
// open streams keep their timers until they reconnect.
type Policy struct {
	IdleTimeout      time.Duration // reset by each delivered message; 0 = off
	MaxLifetime      time.Duration // 0 = off
	Heartbeat        time.Duration // ":\n\n" comment after this long without a write; 0 = off
	WriteTimeout     time.Duration // deadline for one write+flush; 0 = none
	MaxClients       int           // 0 = unlimited
	MaxClientsPerIP  int           // streams per client IP; 0 = unlimited
	MaxSubscriptions int           // per client
	MaxTopicLength   int           // bytes
	// MaxSubscriptionBytes caps a client's topic strings together; 0 = unlimited.
	MaxSubscriptionBytes int
	// MaxTopicVariants caps a client's subscriptions that share one topic
	// base ("posts/*?options=..." spellings), so one event cannot become
	// hundreds of frames for one client; 0 = unlimited.
	MaxTopicVariants int
	ClientQueue      int // pending bytes per client before eviction; 0 = unbounded
	// MaxQueuedBytes caps the memory all clients' pending frames hold (a
	// shared frame once) and, for stalled streams only, the bytes owed to
	// all clients (noteQueued); 0 = unlimited.
	MaxQueuedBytes int64
	Wildcard       bool // allow the "*" topic
	// ResumeWindow is how long published events and messages are kept for
	// resuming clients; 0 = keep none. ResumeBytes caps them; 0 = no cap.
	ResumeWindow time.Duration
	ResumeBytes  int64
	Access       Access // nil = everyone sees everything
	// ForgetAuth is told the identity of an auth record that changed or was
	// deleted, so cached credential lookups resolving to it are dropped.
	ForgetAuth func(identity string)
	Logger     *zap.Logger
}

// DefaultPolicy returns the documented defaults.
func DefaultPolicy() *Policy {
	return &Policy{
		IdleTimeout:      5 * time.Minute,
		Heartbeat:        15 * time.Second,
		WriteTimeout:     10 * time.Second,
		MaxSubscriptions: 1000,
		MaxTopicLength:   2500,
		ClientQueue:      1 << 20,
		// Budgets no real app meets, so that one hostile client hurts only itself.
		MaxClientsPerIP:      100,
		MaxSubscriptionBytes: 64 << 10,
		MaxTopicVariants:     16,
		MaxQueuedBytes:       256 << 20,
		Wildcard:             true,
		ResumeWindow:         2 * time.Minute,
		ResumeBytes:          16 << 20,
	}
}

// Broker holds the clients of one named realtime endpoint.
type Broker struct {
	name   string
	policy atomic.Pointer[Policy]

	clients  [clientShards]clientShard
	seed     maphash.Seed
	nClients atomic.Int64
	perIP    ipCounts

	index      *index
	identities identityIndex // authenticated clients by identity

	// transport puts events and messages in one order (positions counted
	// from 1 within its epoch) and keeps the recent ones for resuming clients.
	transport atomic.Pointer[Transport]
	sessions  sessionStore // what ended streams left behind, for resume_window

	// pubMu serializes delivery (the transport's deliver calls), so every
	// client sees records in one global order.
	pubMu sync.Mutex
	// delivered is the epoch and position of the last record delivered;
	// progress, when someone waits for delivery, is closed at the next one.
	deliveredEpoch string
	deliveredPos   uint64
	progress       chan struct{}
	memo           map[memoKey]bool
	wakeups        []*Client // adopted clients a fan-out queued frames for
	// queuedSinceCheck counts bytes queued since max_queued_bytes was last checked.
	queuedSinceCheck int64
	// heldShared is the bytes of the shared frame tails any queue holds,
	// each counted once (sharedTail).
	heldShared atomic.Int64

	stats stats

	replaySlots chan struct{} // resumes replaying at once (resume.go)

	clusterConfig atomic.Pointer[string] // broker-wide options, compared across nodes

	// messageCounts are the clients each recent custom message reached here
	// (by position, under pubMu), for a cluster-wide {"delivered":N}.
	messageCounts    map[uint64]int
	messageCountRing [256]uint64
	messageCountPos  int

	node       string // this broker's name among a cluster's nodes
	forwarders forwardHandlers
	// stopRefresh stops keepSessionsFresh of the current cluster transport.
	refreshMu   sync.Mutex
	stopRefresh chan struct{}

	writersOnce sync.Once
	writerPool  *writerPool
	adopted     sync.WaitGroup // adopted connections not yet closed

	OnConnect     Hook[*ConnectEvent]
	OnSubscribe   Hook[*SubscribeEvent]
	OnMessageSend Hook[*MessageSendEvent]
	OnDisconnect  Hook[*DisconnectEvent]
}

const clientShards = 64

type clientShard struct {
	mu sync.RWMutex
	m  map[string]*Client
}

// New returns a broker with policy p (nil = DefaultPolicy).
func New(name string, p *Policy) *Broker {
	b := &Broker{
		name:  name,
		node:  newClientID()[:12],
		seed:  maphash.MakeSeed(),
		index: newIndex(),
		memo:  make(map[memoKey]bool),

		replaySlots: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
	}
	b.identities.m = make(map[string]map[*Client]struct{})
	b.sessions.m = make(map[string]*session)
	for i := range b.clients {
		b.clients[i].m = make(map[string]*Client)
	}
	if p == nil {
		p = DefaultPolicy()
	}
	var t Transport = NewMemoryTransport(p.ResumeWindow, p.ResumeBytes)
	_ = t.Start(b.deliver, Position{})
	b.transport.Store(&t)
	b.SetPolicy(p)
	return b
}

// Transport is the transport the broker publishes through.
func (b *Broker) Transport() Transport { return *b.transport.Load() }

// UseTransport makes t the broker's transport (a config that changed it
// committed). The old one is closed first, so nothing is delivered twice;
// t continues after what the broker delivered when it shares that order,
// and otherwise starts a new epoch (resuming clients start over).
func (b *Broker) UseTransport(t Transport) error {
	p := b.Policy()
	t.SetLimits(p.ResumeWindow, p.ResumeBytes)
	if err := b.Transport().Close(); err != nil {
		p.Logger.Warn("closing the previous transport", zap.String("broker", b.name), zap.Error(err))
	}
	b.pubMu.Lock()
	from := Position{Epoch: b.deliveredEpoch, Position: b.deliveredPos}
	b.pubMu.Unlock()
	b.transport.Store(&t)
	b.joinCluster(t)
	return t.Start(b.deliver, from)
}

// Name is the broker's name (the Caddyfile's `broker`, the admin API's ?broker=).
func (b *Broker) Name() string { return b.name }

// Policy returns the current policy. Do not modify it.
func (b *Broker) Policy() *Policy { return b.policy.Load() }

// SetPolicy replaces the policy; streams and subscriptions stay.
func (b *Broker) SetPolicy(p *Policy) {
	if p.Logger == nil {
		p.Logger = zap.NewNop()
	}
	b.policy.Store(p)
	b.Transport().SetLimits(p.ResumeWindow, p.ResumeBytes)
}

// SwapPolicy replaces old with p only if old is still the current policy, so
// that undoing a config that failed to start cannot overwrite a newer one.
func (b *Broker) SwapPolicy(old, p *Policy) bool {
	if p.Logger == nil {
		p.Logger = zap.NewNop()
	}
	if !b.policy.CompareAndSwap(old, p) {
		return false
	}
	b.Transport().SetLimits(p.ResumeWindow, p.ResumeBytes)
	return true
}

// deliver fans a positioned record out to the local clients; the transport
// calls it with every record, in order.
func (b *Broker) deliver(r *Record) {
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if r.Event != nil {
		b.deliverEvent(r.Event, r.Position)
	} else if r.Message != nil {
		r.Message.delivered = b.deliverMessage(r.Message, r.Position)
		b.noteDelivered(r.Position, r.Message.delivered)
	}
	b.deliveredEpoch, b.deliveredPos = b.Epoch(), r.Position
	if b.progress != nil {
		close(b.progress)
		b.progress = nil
	}
}

// waitDelivered waits until the record at position (of the current epoch)
// has been delivered here, so a publish answers after its local clients
// have it queued.
func (b *Broker) waitDelivered(ctx context.Context, position uint64) error {
	for {
		b.pubMu.Lock()
		if b.deliveredEpoch == b.Epoch() && b.deliveredPos >= position || position == 0 {
			b.pubMu.Unlock()
			return nil
		}
		if b.progress == nil {
			b.progress = make(chan struct{})
		}
		ch := b.progress
		b.pubMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *Broker) shard(id string) *clientShard {
	return &b.clients[maphash.String(b.seed, id)%clientShards]
}

// ErrTooManyClients is returned by Connect when max_clients is reached.
var ErrTooManyClients = errors.New("too many realtime clients: the server's max_clients limit is reached, retry later")

// ErrConnectRefused is returned by Connect when an OnConnect handler ends the chain without calling e.Next().
var ErrConnectRefused = errors.New("realtime connection refused by an OnConnect hook")

// Connect registers a new client from ip and queues its PB_CONNECT frame.
func (b *Broker) Connect(ip string) (*Client, error) {
	c, err := b.connect(ip, newClientID(), b.Transport().Last())
	if err == nil {
		c.enqueue(ownTail(connectFrame(c.id)), 0, 0)
	}
	return c, err
}

// connect registers a client with id that has been served every record up to
// since; the caller queues its PB_CONNECT.
func (b *Broker) connect(ip, id string, since uint64) (*Client, error) {
	p := b.Policy()
	if n := b.nClients.Add(1); p.MaxClients > 0 && n > int64(p.MaxClients) {
		b.nClients.Add(-1)
		b.refuse(BudgetMaxClients, ip, "")
		return nil, ErrTooManyClients
	}
	if !b.perIP.add(ip, p.MaxClientsPerIP) {
		b.nClients.Add(-1)
		b.refuse(BudgetMaxClientsPerIP, ip, "")
		return nil, ErrTooManyClientsPerIP
	}
	c := &Client{
		id:        id,
		ip:        ip,
		since:     since,
		broker:    b,
		connected: time.Now(),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		subs:      make(map[string]*topicSubs),
	}
	registered := false
	err := b.OnConnect.Trigger(&ConnectEvent{Client: c}, func(*ConnectEvent) error {
		sh := b.shard(c.id)
		sh.mu.Lock()
		sh.m[c.id] = c
		sh.mu.Unlock()
		registered = true
		return nil
	})
	if err == nil && !registered {
		// A handler ended the chain without e.Next(): the client was never
		// registered, so it must not be handed out (nor keep counting against max_clients).
		err = ErrConnectRefused
	}
	if err != nil {
		b.nClients.Add(-1)
		b.perIP.remove(ip)
		c.Close(ReasonDisconnected)
		b.unregister(c, false)
		return nil, err
	}
	b.stats.connects.Add(1)
	return c, nil
}

// Client returns the connected client with id.
func (b *Broker) Client(id string) (*Client, bool) {
	sh := b.shard(id)
	sh.mu.RLock()
	c, ok := sh.m[id]
	sh.mu.RUnlock()
	return c, ok
}

// Clients returns every connected client, oldest first.
func (b *Broker) Clients() []*Client {
	out := make([]*Client, 0, b.nClients.Load())
	for i := range b.clients {
		sh := &b.clients[i]
		sh.mu.RLock()
		for _, c := range sh.m {
			out = append(out, c)
		}
		sh.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, c *Client) int {
		if d := a.connected.Compare(c.connected); d != 0 {
			return d
		}
		return strings.Compare(a.id, c.id)
	})
	return out
}

// Disconnect closes c (if still open) and forgets it and its subscriptions.
// It is safe to call more than once.
func (b *Broker) Disconnect(c *Client, reason string) {
	c.Close(reason)
	if !b.unregister(c, true) {
		return
	}
	b.nClients.Add(-1)
	b.perIP.remove(c.ip)
	c.authMu.Lock()
	auth := c.Auth()
	b.identities.move(c, auth, nil)
	c.authMu.Unlock()
	c.subsMu.Lock()
	topics := make([]string, 0, len(c.subs))
	for topic := range c.subs {
		topics = append(topics, topic)
		b.index.remove(c, topic)
	}
	b.keepSession(c, topics, auth)
	b.sessions.left(c.id)
	b.stats.subscriptions.Add(-int64(len(c.subs)))
	c.subs = map[string]*topicSubs{}
	c.subsMu.Unlock()
	_ = b.OnDisconnect.Trigger(&DisconnectEvent{Client: c, Reason: c.closeReason()}, nil)
}

// unregister removes c. With leaving (Disconnect), a resume of c's id that
// comes before its session is kept waits for it (sessionStore.leave).
func (b *Broker) unregister(c *Client, leaving bool) bool {
	sh := b.shard(c.id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[c.id] != c {
		return false
	}
	delete(sh.m, c.id)
	if leaving {
		b.sessions.leave(c.id)
	}
	return true
}

// CloseAll ends every stream (process exit: `caddy stop` must not wait for them).
func (b *Broker) CloseAll(reason string) {
	for _, c := range b.Clients() {
		c.Close(reason)
	}
}

// TopicError says which topic of a subscription request was refused and why.
type TopicError struct {
	Index     int
	Topic     string
	Err       error
	Forbidden bool // refused by an access rule (403), not malformed (400)
}

func (e *TopicError) Error() string {
	return fmt.Sprintf("subscription %d (%q): %v", e.Index, e.Topic, e.Err)
}

func (e *TopicError) Unwrap() error { return e.Err }

// SetSubscriptions replaces c's whole subscription set with topics, as a
// PocketBase POST does. Empty topics are skipped and duplicates collapse.
// Nothing changes when an error is returned.
func (b *Broker) SetSubscriptions(c *Client, topics []string) error {
	p := b.Policy()
	auth := c.Auth()
	clean := make([]string, 0, len(topics))
	seen := make(map[string]bool, len(topics))
	for i, t := range topics {
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		if err := ValidateTopic(t, p.Wildcard); err != nil {
			return &TopicError{Index: i, Topic: t, Err: err}
		}
		if p.Access != nil {
			if err := p.Access.CanSubscribe(auth, t); err != nil {
				return &TopicError{Index: i, Topic: t, Err: err, Forbidden: true}
			}
		}
		clean = append(clean, t)
	}
	if err := b.checkSubscriptionBudgets(c.ip, clean, p); err != nil {
		return err
	}
	return b.OnSubscribe.Trigger(&SubscribeEvent{Client: c, Topics: clean}, func(e *SubscribeEvent) error {
		b.replaceSubscriptions(c, e.Topics)
		b.shareSession(c, e.Topics, auth)
		return nil
	})
}

func (b *Broker) replaceSubscriptions(c *Client, topics []string) {
	want := make(map[string]struct{}, len(topics))
	for _, t := range topics {
		if t != "" {
			want[t] = struct{}{}
		}
	}
	c.subsMu.Lock()
	defer c.subsMu.Unlock()
	if c.isClosed() {
		return // a disconnected client must not leave entries in the index
	}
	before := len(c.subs)
	for t := range c.subs {
		if _, keep := want[t]; !keep {
			b.index.remove(c, t)
			delete(c.subs, t)
		}
	}
	for t := range want {
		if _, have := c.subs[t]; !have {
			c.subs[t] = b.index.add(c, t)
		}
	}
	b.stats.subscriptions.Add(int64(len(c.subs) - before))
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Publish publishes events in order and returns how many were published
// (events whose idempotency id was seen recently are skipped); 0 when the
// transport refused them.
func (b *Broker) Publish(events ...*Event) int {
	n, _ := b.PublishContext(context.Background(), events)
	return n
}

// PublishContext publishes events through the transport, all or none, and
// returns how many were new once this node's clients have them queued.
func (b *Broker) PublishContext(ctx context.Context, events []*Event) (int, error) {
	recs := make([]*Record, len(events))
	for i, ev := range events {
		recs[i] = &Record{Event: ev}
	}
	last, n, err := b.Transport().Publish(ctx, recs)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		if err := b.awaitLocal(ctx, last); err != nil {
			return n, err
		}
	}
	return n, nil
}

// localDeliveryWait bounds how long a publish waits for this node's own
// delivery once the transport holds the records (they are published: a
// node that lags still delivers them, in order).
const localDeliveryWait = 5 * time.Second

func (b *Broker) awaitLocal(ctx context.Context, position uint64) error {
	wctx, cancel := context.WithTimeout(ctx, localDeliveryWait)
	defer cancel()
	if err := b.waitDelivered(wctx, position); err != nil && ctx.Err() != nil {
		return fmt.Errorf("published, but not yet delivered on this node: %w", err)
	}
	return nil
}

func (b *Broker) deliverEvent(ev *Event, pos uint64) {
	start := time.Now()
	if ev.Action == ActionDelete {
		// A user deleting their own record still receives the delete
		// (judged with the auth they had), then becomes a guest.
		b.fanout(ev, pos)
		b.refreshAuth(ev)
	} else {
		refreshed := b.refreshAuth(ev)
		b.fanout(ev, pos)
		for _, c := range refreshed {
			c.recheck()
		}
	}
	b.stats.fanout.observe(time.Since(start))
	b.stats.eventsIn.Add(1)
}

// EventError says which event of a batch was refused and why.
type EventError struct {
	Index int
	Err   error
}

func (e *EventError) Error() string { return fmt.Sprintf("event %d: %v", e.Index, e.Err) }
func (e *EventError) Unwrap() error { return e.Err }

// CheckEvents refuses, before anything is published, events that the current
// policy cannot judge: records missing a field their collection's rules read,
// and updates of a signed-in client's auth record missing a field rules read
// through @request.auth.*. Publish all of them or none.
func (b *Broker) CheckEvents(events []*Event) error {
	p := b.Policy()
	checker, _ := p.Access.(interface{ CheckEvent(*Event) error })
	for i, ev := range events {
		if checker != nil {
			if err := checker.CheckEvent(ev); err != nil {
				return &EventError{Index: i, Err: err}
			}
		}
		if err := b.checkAuthRecord(ev, p.Access); err != nil {
			return &EventError{Index: i, Err: err}
		}
	}
	return nil
}

type memoKey struct {
	auth string // the client's auth fingerprint: equal auth records share answers
	kind TopicKind
	// opts is the topic's "?..." part when it has options, which rules and
	// filters may read: identical (options, auth) pairs share one answer
	// per event, whichever topic string carries them.
	opts string
}

func (b *Broker) fanout(ev *Event, pos uint64) {
	p := b.Policy()
	var pick FieldPicker
	var hidden []string
	if p.Access != nil {
		pick = p.Access.PickFields()
		clear(b.memo)
		if h, ok := p.Access.(interface{ HiddenFields(*Event) []string }); ok {
			hidden = h.HiddenFields(ev)
		}
	}
	hooked := b.OnMessageSend.Len() > 0
	queued := 0
	var basesArr [7]baseKind
	for _, bk := range recordBases(basesArr[:0], ev.Collection, ev.CollectionID, ev.RecordID) {
		b.index.each(bk.base, func(ts *topicSubs) {
			var tails [viewCount]*sharedTail
			for c := range ts.clients {
				if p.Access != nil && !b.allowed(p.Access, c, ev, bk.kind, ts) {
					continue
				}
				var v view
				if ev.hideEmail && !c.seesEmailOf(ev) {
					v |= viewHideEmail
				}
				if len(hidden) > 0 && !c.isSuperuser() {
					v |= viewHideHidden
				}
				out := &tails[v]
				if *out == nil {
					*out = b.newTail(frameTail(ts.topic, ev.payload(ts.opts.Fields(), pick, v, hidden)))
				}
				queued += len((*out).b)
				if hooked {
					b.sendHooked(c, ts.topic, *out, pos, p.ClientQueue)
					continue
				}
				c.enqueueDeferred(*out, pos, p.ClientQueue, &b.wakeups)
			}
			for _, t := range tails {
				if t != nil {
					t.done()
				}
			}
		})
	}
	if len(b.wakeups) > 0 {
		b.writers().pushAll(b.wakeups)
		clear(b.wakeups)
		b.wakeups = b.wakeups[:0]
	}
	b.noteQueued(queued, p)
}

// allowed evaluates rules once per distinct auth record (and filter once per
// auth record and subscription) per event; called with pubMu held.
func (b *Broker) allowed(a Access, c *Client, ev *Event, kind TopicKind, ts *topicSubs) bool {
	k := memoKey{auth: c.fingerprint(), kind: kind}
	if ts.opts != nil {
		k.opts = ts.topic[len(TopicBase(ts.topic)):]
	}
	ok, hit := b.memo[k]
	if !hit {
		ok = a.CanReceive(c.Auth(), ev, kind, ts.opts)
		b.memo[k] = ok
	}
	return ok
}

// sendHooked runs OnMessageSend; handlers may rewrite the message or skip it.
// It reports whether the message was queued.
func (b *Broker) sendHooked(c *Client, topic string, tail *sharedTail, pos uint64, limit int) bool {
	return b.sendHookedAs(c, topic, tail, pos, limit, false)
}

// sendHookedAs is sendHooked for a live frame or, replayed, a resume's.
func (b *Broker) sendHookedAs(c *Client, topic string, tail *sharedTail, pos uint64, limit int, replayed bool) bool {
	data := tailData(tail.b, topic) // capped: appending to e.Data copies
	e := &MessageSendEvent{Client: c, Name: topic, Data: data}
	queued := false
	_ = b.OnMessageSend.Trigger(e, func(e *MessageSendEvent) error {
		if e.Name == topic && len(e.Data) == len(data) && (len(data) == 0 || &e.Data[0] == &data[0]) {
			queued = c.queueFrame(tail, pos, limit, replayed, nil)
		} else {
			t := b.newTail(frameTail(e.Name, e.Data))
			queued = c.queueFrame(t, pos, limit, replayed, nil)
			t.done()
		}
		return nil
	})
	return queued
}

// SendMessage delivers a custom message to the clients subscribed to exactly
// m.Name (and, when m.Clients is set, only to those of them). It returns how many got it.
func (b *Broker) SendMessage(m *Message) int {
	n, _ := b.SendMessageContext(context.Background(), m)
	return n
}

// SendMessageContext publishes m through the transport and returns how many
// of this node's clients it was queued for.
func (b *Broker) SendMessageContext(ctx context.Context, m *Message) (int, error) {
	last, _, err := b.Transport().Publish(ctx, []*Record{{Message: m}})
	if err != nil {
		return 0, err
	}
	if err := b.awaitLocal(ctx, last); err != nil {
		return 0, err
	}
	if b.Cluster() != nil {
		return b.clusterDelivered(ctx, last), nil
	}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	return m.delivered, nil
}

func (b *Broker) deliverMessage(m *Message, pos uint64) int {
	p := b.Policy()
	var only map[string]bool
	if len(m.Clients) > 0 {
		only = make(map[string]bool, len(m.Clients))
		for _, id := range m.Clients {
			only[id] = true
		}
	}
	hooked := b.OnMessageSend.Len() > 0
	delivered := 0
	tail := b.newTail(frameTail(m.Name, m.Data))
	defer tail.done()
	// Topic rules are applied again at delivery, once per distinct auth
	// record: an auth refresh (demotion, logout, delete) since the client
	// subscribed must not keep a restricted topic's messages coming.
	allowed := map[string]bool{}
	b.index.exact(m.Name, func(ts *topicSubs) {
		for c := range ts.clients {
			if only != nil && !only[c.id] {
				continue
			}
			if p.Access != nil {
				fp := c.fingerprint()
				ok, seen := allowed[fp]
				if !seen {
					ok = p.Access.CanSubscribe(c.Auth(), m.Name) == nil
					allowed[fp] = ok
				}
				if !ok {
					continue
				}
			}
			if hooked {
				if !b.sendHooked(c, m.Name, tail, pos, p.ClientQueue) {
					continue
				}
			} else if !c.enqueue(tail, pos, p.ClientQueue) {
				continue
			}
			delivered++
		}
	})
	b.noteQueued(delivered*len(tail.b), p)
	b.stats.messagesIn.Add(1)
	return delivered
}

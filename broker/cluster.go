package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"

	"bytes"
	"context"
	"encoding/json"
	"go.uber.org/zap"
	"strconv"
	"sync"
	"time"
)

// Cluster is what a transport shared by several nodes offers beyond the
// order: reaching the node that holds a client, and sessions every node can
// resume. The broker uses it when its transport implements it.
type Cluster interface {
	// Forward sends req about the client id to the node holding its stream
	// and returns that node's answer; held is false when no node holds it.
	Forward(ctx context.Context, clientID string, req []byte) (resp []byte, held bool, err error)
	// HandleForwarded sets what answers requests forwarded to this node
	// about its clients (held false: not this node's client, say nothing).
	HandleForwarded(fn func(clientID string, req []byte) (resp []byte, held bool))
	// SaveSession stores what a client would need to resume on any node.
	SaveSession(clientID string, s []byte)
	// TakeSession removes and returns a stored session.
	TakeSession(ctx context.Context, clientID string) ([]byte, bool)
	// DeleteSession forgets a session (a client that may not resume).
	DeleteSession(clientID string)
	// Gather sends req to every node (this one too) and returns the answers
	// that arrive within a short wait.
	Gather(ctx context.Context, req []byte) [][]byte
	// HandleGather sets what answers gathered requests on this node.
	HandleGather(fn func(req []byte) []byte)
}

// Cluster is the broker's transport as a Cluster, or nil on a single node.
func (b *Broker) Cluster() Cluster {
	c, _ := b.Transport().(Cluster)
	return c
}

// sharedSession is a session as the cluster stores it.
type sharedSession struct {
	IP     string   `json:"ip"`
	Topics []string `json:"topics"`
	Auth   *Auth    `json:"auth,omitempty"`
	Epoch  string   `json:"epoch"`
	Since  uint64   `json:"since"`
	// Ended is when its stream ended (Unix ms); 0: it was live when stored,
	// and a node that dies never says it ended.
	Ended int64 `json:"ended,omitempty"`
}

// SessionTTL is how long the cluster keeps a session: the resume window for
// an ended stream (checked when it is taken), and for a live one as long as
// its node refreshes it (every SessionTTL/2) — so a client whose node died
// after hours still resumes.
func SessionTTL(window time.Duration) time.Duration { return max(window, time.Hour) }

// shareSession stores c's session in the cluster (after a subscription
// change, and when its stream ends), so a node other than this one can
// resume it if this one dies.
func (b *Broker) shareSession(c *Client, topics []string, auth *Auth) {
	cl := b.Cluster()
	if cl == nil || b.Policy().ResumeWindow <= 0 {
		return
	}
	s := sharedSession{IP: c.ip, Topics: topics, Auth: auth, Epoch: b.Epoch(), Since: c.since}
	if c.isClosed() {
		s.Ended = time.Now().UnixMilli()
	}
	raw, err := json.Marshal(s)
	if err == nil {
		c.sharedAt.Store(time.Now().UnixNano())
		cl.SaveSession(c.id, raw)
	}
}

// refreshSharedSessions stores again the sessions of live clients stored
// longer than half the session TTL ago, so they outlive it while live.
func (b *Broker) refreshSharedSessions() {
	ttl := SessionTTL(b.Policy().ResumeWindow)
	stale := time.Now().Add(-ttl / 2).UnixNano()
	for _, c := range b.Clients() {
		if at := c.sharedAt.Load(); at != 0 && at < stale && !c.isClosed() {
			b.shareSession(c, c.Subscriptions(), c.Auth())
		}
	}
}

// joinCluster stops the previous transport's session refresher and, when t
// is a cluster, answers its forwarded and gathered requests here and keeps
// this node's sessions fresh in it (nil: only stop).
func (b *Broker) joinCluster(t Transport) {
	b.refreshMu.Lock()
	defer b.refreshMu.Unlock()
	if b.stopRefresh != nil {
		close(b.stopRefresh)
		b.stopRefresh = nil
	}
	cl, ok := t.(Cluster)
	if !ok {
		return
	}
	cl.HandleForwarded(b.onForwarded)
	cl.HandleGather(b.onGather)
	b.stopRefresh = make(chan struct{})
	go b.keepSessionsFresh(b.stopRefresh)
}

// keepSessionsFresh runs refreshSharedSessions until stop is closed.
func (b *Broker) keepSessionsFresh(stop <-chan struct{}) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			b.refreshSharedSessions()
		}
	}
}

// takeSharedSession takes a session another node stored.
func (b *Broker) takeSharedSession(id, ip string) *session {
	cl := b.Cluster()
	if cl == nil {
		return nil
	}
	raw, ok := cl.TakeSession(context.Background(), id)
	if !ok {
		return nil
	}
	var s sharedSession
	if err := json.Unmarshal(raw, &s); err != nil || s.IP != ip {
		return nil
	}
	if s.Ended != 0 && time.Since(time.UnixMilli(s.Ended)) > b.Policy().ResumeWindow {
		return nil // ended longer ago than the window
	}
	if s.Epoch != b.Epoch() {
		s.Since = 0
	}
	return &session{ip: s.IP, topics: s.Topics, auth: s.Auth, since: s.Since}
}

// ForwardHandler answers a request about c that another node forwarded.
type ForwardHandler func(c *Client, payload []byte) []byte

type forwardHandlers struct {
	mu sync.RWMutex
	m  map[string]ForwardHandler
}

// HandleForwarded sets what answers forwarded requests of kind (the root
// package registers the subscription POST and the admin client routes).
func (b *Broker) HandleForwarded(kind string, fn ForwardHandler) {
	b.forwarders.mu.Lock()
	defer b.forwarders.mu.Unlock()
	if b.forwarders.m == nil {
		b.forwarders.m = map[string]ForwardHandler{}
	}
	b.forwarders.m[kind] = fn
}

// Gather asks every node's broker of the cluster (this one too) a request of
// kind and returns their answers; nil on a single node.
func (b *Broker) Gather(ctx context.Context, kind string, payload []byte) [][]byte {
	cl := b.Cluster()
	if cl == nil {
		return nil
	}
	req := make([]byte, 0, len(kind)+len(payload)+1)
	return cl.Gather(ctx, append(append(append(req, kind...), 0), payload...))
}

// onGather answers a gathered request with the handler of its kind.
func (b *Broker) onGather(req []byte) []byte {
	kind, payload, ok := bytes.Cut(req, []byte{0})
	if !ok {
		return nil
	}
	switch string(kind) {
	case kindDelivered:
		return b.answerDelivered(payload)
	case kindConfig:
		return b.answerConfig()
	}
	b.forwarders.mu.RLock()
	fn := b.forwarders.m[string(kind)]
	b.forwarders.mu.RUnlock()
	if fn == nil {
		return nil
	}
	return fn(nil, payload)
}

// Node names this broker among the cluster's nodes.
func (b *Broker) Node() string { return b.node }

// kindMoved tells the node holding a client's old stream that the client
// resumed elsewhere.
const kindMoved = "moved"

// Forward sends a request of kind about the client id to the node holding
// it; held is false when no other node does (or on a single node).
func (b *Broker) Forward(ctx context.Context, clientID, kind string, payload []byte) (resp []byte, held bool, err error) {
	cl := b.Cluster()
	if cl == nil {
		return nil, false, nil
	}
	req := make([]byte, 0, len(kind)+len(b.node)+len(payload)+2)
	req = append(append(append(append(append(req, kind...), 0), b.node...), 0), payload...)
	return cl.Forward(ctx, clientID, req)
}

// onForwarded answers a forwarded request when this node holds the client.
func (b *Broker) onForwarded(clientID string, req []byte) ([]byte, bool) {
	kind, rest, ok1 := bytes.Cut(req, []byte{0})
	origin, payload, ok2 := bytes.Cut(rest, []byte{0})
	if !ok1 || !ok2 || string(origin) == b.node {
		return nil, false
	}
	c, ok := b.Client(clientID)
	if !ok {
		return nil, false
	}
	if string(kind) == kindMoved {
		b.Disconnect(c, ReasonMoved)
		return []byte("moved"), true
	}
	b.forwarders.mu.RLock()
	fn := b.forwarders.m[string(kind)]
	b.forwarders.mu.RUnlock()
	if fn == nil {
		return nil, false
	}
	return fn(c, payload), true
}

// resumedHere shares a resumed client's session and ends its old stream if
// another node still holds it.
func (b *Broker) resumedHere(c *Client) {
	if b.Cluster() == nil {
		return
	}
	b.shareSession(c, c.Subscriptions(), c.Auth())
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, _, _ = b.Forward(ctx, c.id, kindMoved, nil)
	}()
}

// Node names the node holding c's stream on several nodes ("" on one).
func (c *Client) Node() string {
	if c.broker.Cluster() == nil {
		return ""
	}
	return c.broker.node
}

// kindDelivered asks every node how many of its clients a custom message reached.
const kindDelivered = "delivered"

// noteDelivered remembers how many clients the message at position reached
// here; pubMu held.
func (b *Broker) noteDelivered(position uint64, n int) {
	if b.Cluster() == nil {
		return
	}
	if b.messageCounts == nil {
		b.messageCounts = make(map[uint64]int, len(b.messageCountRing))
	}
	delete(b.messageCounts, b.messageCountRing[b.messageCountPos])
	b.messageCountRing[b.messageCountPos] = position
	b.messageCountPos = (b.messageCountPos + 1) % len(b.messageCountRing)
	b.messageCounts[position] = n
}

// clusterDelivered sums what every node's clients got of the message at position.
func (b *Broker) clusterDelivered(ctx context.Context, position uint64) int {
	total := 0
	for _, raw := range b.Gather(ctx, kindDelivered, strconv.AppendUint(nil, position, 10)) {
		n, _ := strconv.Atoi(string(raw))
		total += n
	}
	return total
}

// answerDelivered is a node's answer to kindDelivered: it waits (briefly)
// until it delivered the message itself.
func (b *Broker) answerDelivered(payload []byte) []byte {
	position, err := strconv.ParseUint(string(payload), 10, 64)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if b.waitDelivered(ctx, position) != nil {
		return nil
	}
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	return strconv.AppendInt(nil, int64(b.messageCounts[position]), 10)
}

// kindConfig asks every node for the broker-wide options it runs with.
const kindConfig = "config"

// SetClusterConfig records the broker-wide options (as a JSON object) this
// node runs with, and has them compared with every other node's: nodes
// sharing an order but not rules would deliver differently, so a mismatch
// is logged with the names of the options that differ (never their values).
func (b *Broker) SetClusterConfig(options string) {
	// Only a digest of each option goes over NATS: options hold secrets.
	var raw map[string]json.RawMessage
	if json.Unmarshal([]byte(options), &raw) != nil {
		return
	}
	digests := make(map[string]string, len(raw))
	for k, v := range raw {
		sum := sha256.Sum256(v)
		digests[k] = hex.EncodeToString(sum[:8])
	}
	enc, _ := json.Marshal(digests)
	mine := string(enc)
	b.clusterConfig.Store(&mine)
	if b.Cluster() == nil {
		return
	}
	go b.compareClusterConfig(mine)
}

func (b *Broker) compareClusterConfig(mine string) {
	ready, _ := b.Transport().(interface{ Ready() bool })
	for i := 0; ready != nil && !ready.Ready() && i < 300; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var ours map[string]json.RawMessage
	if json.Unmarshal([]byte(mine), &ours) != nil {
		return
	}
	for _, raw := range b.Gather(ctx, kindConfig, nil) {
		node, theirs, ok := bytes.Cut(raw, []byte{0})
		if !ok || string(node) == b.node {
			continue
		}
		var other map[string]json.RawMessage
		if json.Unmarshal(theirs, &other) != nil {
			continue
		}
		var differ []string
		for k, v := range ours {
			if !bytes.Equal(v, other[k]) {
				differ = append(differ, k)
			}
		}
		for k := range other {
			if _, ok := ours[k]; !ok {
				differ = append(differ, k)
			}
		}
		if len(differ) > 0 {
			sort.Strings(differ)
			b.Policy().Logger.Warn("realtime nodes sharing this broker's stream run different options: give every node the same config",
				zap.String("broker", b.name), zap.String("node", b.node), zap.String("other_node", string(node)),
				zap.Strings("options", differ))
		}
	}
}

func (b *Broker) answerConfig() []byte {
	p := b.clusterConfig.Load()
	if p == nil {
		return nil
	}
	return append(append([]byte(b.node), 0), *p...)
}

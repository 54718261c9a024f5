package broker

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Budgets a client can exhaust. Each refusal is counted by its budget's name
// (Stats.Refused), logged with the client's IP, and answered with a clear error.
const (
	BudgetMaxClients           = "max_clients"
	BudgetMaxClientsPerIP      = "max_clients_per_ip"
	BudgetMaxSubscriptionBytes = "max_subscription_bytes"
	BudgetMaxTopicVariants     = "max_topic_variants"
)

// Budgets are the names of every refusal counter, in a fixed order.
var Budgets = [...]string{BudgetMaxClients, BudgetMaxClientsPerIP, BudgetMaxSubscriptionBytes, BudgetMaxTopicVariants}

// ErrTooManyClientsPerIP is returned by Connect when the client's IP holds max_clients_per_ip streams.
var ErrTooManyClientsPerIP = errors.New("too many realtime streams from your address: the server's max_clients_per_ip limit is reached")

// BudgetError refuses a subscription request that passes a per-client budget.
type BudgetError struct {
	Budget string // one of the Budget* names
	Msg    string
}

func (e *BudgetError) Error() string { return e.Msg }

// ipCounts counts open streams per client IP.
type ipCounts struct {
	mu sync.Mutex
	m  map[string]int
}

// ipKey is what one client IP counts as: an IPv4 address, or an IPv6 /64
// (one host usually holds a whole /64); IPv4-mapped IPv6 is IPv4.
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// add counts one more stream from ip unless that would pass limit (0 = none).
func (ic *ipCounts) add(ip string, limit int) bool {
	ip = ipKey(ip)
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if limit > 0 && ic.m[ip] >= limit {
		return false
	}
	if ic.m == nil {
		ic.m = map[string]int{}
	}
	ic.m[ip]++
	return true
}

func (ic *ipCounts) remove(ip string) {
	ip = ipKey(ip)
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if ic.m[ip] <= 1 {
		delete(ic.m, ip)
		return
	}
	ic.m[ip]--
}

func (b *Broker) refuse(budget, ip string, detail string) {
	for i, name := range Budgets {
		if name == budget {
			b.stats.refused[i].Add(1)
		}
	}
	if ce := b.Policy().Logger.Check(zap.InfoLevel, "realtime budget exhausted"); ce != nil {
		ce.Write(zap.String("broker", b.name), zap.String("budget", budget), zap.String("ip", ip), zap.String("detail", detail))
	}
}

// CheckSubscriptionBudgets applies max_subscription_bytes and
// max_topic_variants to a subscription request's topics (duplicates and
// empty topics count once) from ip, before anything else is done with them:
// a refused request costs no filter compilation. SetSubscriptions applies
// them again to the set it stores.
func (b *Broker) CheckSubscriptionBudgets(ip string, topics []string) error {
	p := b.Policy()
	if p.MaxSubscriptionBytes <= 0 && p.MaxTopicVariants <= 0 {
		return nil
	}
	seen := make(map[string]bool, len(topics))
	distinct := make([]string, 0, len(topics))
	for _, t := range topics {
		if t != "" && !seen[t] {
			seen[t] = true
			distinct = append(distinct, t)
		}
	}
	return b.checkSubscriptionBudgets(ip, distinct, p)
}

// checkSubscriptionBudgets applies max_subscription_bytes and
// max_topic_variants to a client's whole new subscription set.
func (b *Broker) checkSubscriptionBudgets(ip string, topics []string, p *Policy) error {
	if p.MaxSubscriptionBytes <= 0 && p.MaxTopicVariants <= 0 {
		return nil
	}
	total := 0
	variants := map[string]int{}
	for _, t := range topics {
		total += len(t)
		variants[TopicBase(t)]++
	}
	if p.MaxSubscriptionBytes > 0 && total > p.MaxSubscriptionBytes {
		msg := fmt.Sprintf("The subscriptions take %d bytes together, more than this server's max_subscription_bytes (%d).", total, p.MaxSubscriptionBytes)
		b.refuse(BudgetMaxSubscriptionBytes, ip, msg)
		return &BudgetError{Budget: BudgetMaxSubscriptionBytes, Msg: msg}
	}
	if p.MaxTopicVariants > 0 {
		for base, n := range variants {
			if n > p.MaxTopicVariants {
				msg := fmt.Sprintf("%d subscriptions share the topic %q (with different options), more than this server's max_topic_variants (%d).", n, base, p.MaxTopicVariants)
				b.refuse(BudgetMaxTopicVariants, ip, msg)
				return &BudgetError{Budget: BudgetMaxTopicVariants, Msg: msg}
			}
		}
	}
	return nil
}

// pendingBytes is what c holds in memory for its peer: queued frames and
// what its writer took but has not written yet; own is the part no other
// client shares (frame tails are shared, see sharedTail). refusing is
// whether its stream has stopped taking bytes: an adopted socket that has
// accepted nothing for stuckWrite while bytes wait, or a blocking write
// (Serve's, a TLS connection's) in progress for longer than that, which a
// reading peer's never is (a burst fills a healthy socket too, but it
// takes more as soon as its peer reads). stalled is refusing for
// stalledFor: what the bytes owed may evict (noteQueued).
func (c *Client) pendingBytes() queuedHere {
	c.mu.Lock()
	var h queuedHere
	h.n = c.queue.Len() + c.unsent + c.inflight
	h.own = h.n - c.queue.shared - c.batchShared
	h.batchShared = c.batchShared
	now := time.Now().UnixNano()
	var since int64 // when the stream stopped taking bytes
	if c.unsent > 0 && c.conn != nil && !c.conn.blocking {
		since = c.refusedAt
	}
	c.mu.Unlock()
	if w := c.writingSince.Load(); w != 0 && (since == 0 || w < since) {
		since = w
	}
	h.refusing = since != 0 && now-since > int64(stuckWrite)
	h.stalled = since != 0 && now-since > int64(stalledFor)
	return h
}

// queuedHere is what one client holds (pendingBytes).
type queuedHere struct {
	n, own      int
	batchShared int // of n: shared tails in the batch its writer holds
	refusing    bool
	stalled     bool
}

// queuedBytes is what max_queued_bytes counts (noteQueued).
func (b *Broker) queuedBytes() int64 {
	n := b.heldShared.Load()
	for _, c := range b.Clients() {
		n += int64(c.pendingBytes().own)
	}
	return n
}

// stuckWrite is how long a stream must have taken no bytes to count as
// refusing them; stalledFor, to be evicted for the bytes owed to all clients
// while memory is within the budget. A healthy reader starved of CPU for a
// moment must not look stalled: the second figure is ten times the first.
const (
	stuckWrite = 100 * time.Millisecond
	stalledFor = time.Second
)

// noteQueued is called by a fan-out with the bytes it queued (each client's
// frames in full). Memory only grows when frames are queued, so the
// broker-wide max_queued_bytes is checked after every max/8 queued bytes.
//
// Two totals are held against it. The memory the queues hold: every
// client's own bytes (id lines, framing, short frames) and each shared
// frame tail once, however many queues hold it. And what the broker owes
// its streams: every client's frames in full, the work its writers still
// have to do. While the memory is over 7/8 of the budget, streams that
// stopped taking bytes (refusing) go, the largest first, then the others,
// the largest first. While only the bytes owed are, streams that have taken
// nothing for stalledFor go, the largest first. A healthy stream that
// fell behind while the writers were busy (with thousands of stalled
// streams connecting, say) has a large queue but a socket that takes it: it
// goes only when memory leaves no choice, and a burst that every stream
// holds at once costs its frames once, so it evicts nobody for memory.
// Evictions have reason queued_bytes. Called with pubMu held.
func (b *Broker) noteQueued(n int, p *Policy) {
	if p.MaxQueuedBytes <= 0 || n == 0 {
		return
	}
	b.queuedSinceCheck += int64(n)
	if b.queuedSinceCheck < p.MaxQueuedBytes/8 {
		return
	}
	b.queuedSinceCheck = 0
	type held struct {
		c *Client
		queuedHere
	}
	var all []held
	var own, owed int64
	for _, c := range b.Clients() {
		if h := c.pendingBytes(); h.n > 0 {
			all = append(all, held{c, h})
			own += int64(h.own)
			owed += int64(h.n)
		}
	}
	if own+b.heldShared.Load() <= p.MaxQueuedBytes && owed <= p.MaxQueuedBytes {
		return
	}
	slices.SortFunc(all, func(x, y held) int {
		if x.refusing != y.refusing {
			if x.refusing {
				return -1
			}
			return 1
		}
		return y.n - x.n
	})
	// An evicted client's queue lets go of its shared tails at once (the
	// ones no other queue holds leave heldShared), but the batch its writer
	// holds only when the writer has closed the stream: heldShared is read
	// again after each eviction, and the tails in a closing writer's batch
	// are counted as gone (at most: other queues may hold them too).
	target := p.MaxQueuedBytes / 8 * 7
	var closing int64
	for _, h := range all {
		switch {
		case own+b.heldShared.Load()-closing > target:
		case owed > target && h.stalled:
		case owed > target && h.refusing:
			continue // a stalled one may come later (sorted by size)
		default:
			return
		}
		h.c.Close(ReasonQueuedBytes)
		own -= int64(h.own)
		owed -= int64(h.n)
		closing += int64(h.batchShared)
	}
}

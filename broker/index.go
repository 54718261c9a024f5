package broker

import (
	"hash/maphash"
	"sync"
)

// topicSubs is everyone subscribed to one exact topic string. The frame tail
// ("event:<topic>\ndata:...\n\n") is built once per event for all of them.
type topicSubs struct {
	topic   string
	opts    *Options
	clients map[*Client]struct{}
}

// index maps a topic base (the topic before "?") to the exact topic strings
// subscribed under it, so an event costs a few map lookups plus the matching
// clients, never a walk over every client.
type index struct {
	seed   maphash.Seed
	shards [indexShards]indexShard
}

const indexShards = 64

type indexShard struct {
	mu     sync.RWMutex
	byBase map[string]map[string]*topicSubs
}

func newIndex() *index {
	ix := &index{seed: maphash.MakeSeed()}
	for i := range ix.shards {
		ix.shards[i].byBase = make(map[string]map[string]*topicSubs)
	}
	return ix
}

func (ix *index) shard(base string) *indexShard {
	return &ix.shards[maphash.String(ix.seed, base)%indexShards]
}

// add subscribes c to topic and returns the entry (shared by every subscriber of topic).
func (ix *index) add(c *Client, topic string) *topicSubs {
	base := TopicBase(topic)
	sh := ix.shard(base)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	topics := sh.byBase[base]
	if topics == nil {
		topics = make(map[string]*topicSubs, 1)
		sh.byBase[base] = topics
	}
	ts := topics[topic]
	if ts == nil {
		ts = &topicSubs{topic: topic, opts: ParseOptions(topic), clients: make(map[*Client]struct{}, 1)}
		topics[topic] = ts
	}
	ts.clients[c] = struct{}{}
	return ts
}

// remove unsubscribes c from topic, dropping empty entries.
func (ix *index) remove(c *Client, topic string) {
	base := TopicBase(topic)
	sh := ix.shard(base)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	topics := sh.byBase[base]
	ts := topics[topic]
	if ts == nil {
		return
	}
	delete(ts.clients, c)
	if len(ts.clients) == 0 {
		delete(topics, topic)
		if len(topics) == 0 {
			delete(sh.byBase, base)
		}
	}
}

// each calls fn for every topic entry under base while holding the shard's read lock.
// fn must not subscribe or unsubscribe.
func (ix *index) each(base string, fn func(ts *topicSubs)) {
	sh := ix.shard(base)
	sh.mu.RLock()
	for _, ts := range sh.byBase[base] {
		fn(ts)
	}
	sh.mu.RUnlock()
}

// exact calls fn for the subscribers of exactly topic.
func (ix *index) exact(topic string, fn func(ts *topicSubs)) {
	sh := ix.shard(TopicBase(topic))
	sh.mu.RLock()
	if ts := sh.byBase[TopicBase(topic)][topic]; ts != nil {
		fn(ts)
	}
	sh.mu.RUnlock()
}

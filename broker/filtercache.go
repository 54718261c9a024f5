package broker

import (
	"container/list"
	"errors"
	"fmt"
	"sync"

	"github.com/caddy-realtime/realtime/rules"
)

// MaxFilterExpressions is PocketBase's limit on the comparisons of a client
// filter (search.DefaultFilterExprLimit).
const MaxFilterExpressions = 200

// ErrTooManyExpressions refuses a filter with more than MaxFilterExpressions
// comparisons, as PocketBase's filter builder does.
var ErrTooManyExpressions = fmt.Errorf("max filter expressions limit reached (%d)", MaxFilterExpressions)

// CompileFilter compiles a subscription's options.query.filter. Results,
// errors included, are cached by filter text in a bounded LRU shared by all
// brokers, so that many clients subscribing with the same filter (the SDK
// case) compile it once. The returned *rules.Rule is immutable and shared.
func CompileFilter(filter string) (*rules.Rule, error) {
	if len(filter) > maxCachedFilter {
		return compileFilter(filter)
	}
	return filters.get(filter)
}

func compileFilter(filter string) (*rules.Rule, error) {
	r, err := rules.Compile(filter)
	if err != nil {
		return nil, err
	}
	if r.Expressions() > MaxFilterExpressions {
		return nil, ErrTooManyExpressions
	}
	for _, f := range r.RecordFields() {
		if unfilterable[f] {
			return nil, fmt.Errorf("%w %q", ErrUnknownFilterField, f)
		}
	}
	return r, nil
}

// ErrUnknownFilterField refuses a filter on a key that every event record
// carries but PocketBase's filter resolver does not know: observed on
// PocketBase v0.40.4, a subscription filtering on collectionName,
// collectionId or expand.* never receives an event (PocketBase reserves
// these names, so no collection has such a field).
var ErrUnknownFilterField = errors.New("unknown field")

var unfilterable = map[string]bool{"collectionName": true, "collectionId": true, "expand": true}

const (
	filterCacheEntries = 4096
	// maxCachedFilter keeps the cache's memory bounded (entries × text)
	// whatever max_topic_length allows; longer filters compile every time.
	maxCachedFilter = 8 << 10
)

var filters = newFilterCache(filterCacheEntries)

type filterResult struct {
	key  string
	rule *rules.Rule
	err  error
}

// filterCache is a mutex-guarded LRU. Compiling happens outside the lock;
// two goroutines missing the same key both compile and the later one wins,
// which is harmless (equal results).
type filterCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // front = most recently used; values are *filterResult
	items map[string]*list.Element
}

func newFilterCache(max int) *filterCache {
	return &filterCache{max: max, ll: list.New(), items: make(map[string]*list.Element, max)}
}

func (c *filterCache) get(key string) (*rules.Rule, error) {
	c.mu.Lock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		res := e.Value.(*filterResult)
		c.mu.Unlock()
		return res.rule, res.err
	}
	c.mu.Unlock()

	rule, err := compileFilter(key)
	res := &filterResult{key: key, rule: rule, err: err}

	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok {
		c.ll.MoveToFront(e)
		e.Value = res
		return rule, err
	}
	c.items[key] = c.ll.PushFront(res)
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*filterResult).key)
	}
	return rule, err
}

func (c *filterCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

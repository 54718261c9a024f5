//go:build linux

package bench

import (
	"bytes"
	"fmt"
	"sync"
	"time"
)

// churnState drives subscription POST churn on one loop: a fixed number of
// requests in flight (closed loop), each answer sending the next one.
type churnState struct {
	g        *ConnGroup
	until    int64
	conns    []*subConn
	next     int
	inflight int
	hist     *Histogram
	ok, bad  int64
	errs     map[string]int
	done     func()
}

// ChurnResult is the outcome of a churn run.
type ChurnResult struct {
	Requests, OK, Failed int64
	Elapsed              time.Duration
	Latency              *Histogram
	Errors               map[string]int
}

// Churn re-POSTs the subscriptions of g's connections (alternating between
// two topic sets) for d, keeping window requests in flight per loop.
func (lg *LoadGen) Churn(g *ConnGroup, d time.Duration, window int) ChurnResult {
	start := time.Now()
	until := start.Add(d).UnixNano()
	var wg sync.WaitGroup
	states := make([]*churnState, len(lg.loops))
	for i, l := range lg.loops {
		wg.Add(1)
		st := &churnState{g: g, until: until, hist: NewHistogram(), errs: map[string]int{}, done: wg.Done}
		states[i] = st
		l.post(func() {
			for _, c := range l.subs {
				if c.g == g && c.subbed && c.state != stClosed {
					st.conns = append(st.conns, c)
				}
			}
			l.churn = st
			if len(st.conns) == 0 {
				l.churn = nil
				st.done()
				return
			}
			for range window {
				l.churnNext()
			}
		})
	}
	wg.Wait()
	res := ChurnResult{Elapsed: time.Since(start), Latency: NewHistogram(), Errors: map[string]int{}}
	for _, st := range states {
		res.OK += st.ok
		res.Failed += st.bad
		res.Latency.Merge(st.hist)
		for k, v := range st.errs {
			res.Errors[k] += v
		}
	}
	res.Requests = res.OK + res.Failed
	return res
}

func (l *loop) churnNext() {
	st := l.churn
	for range len(st.conns) {
		c := st.conns[st.next]
		st.next = (st.next + 1) % len(st.conns)
		if c.state == stClosed {
			continue
		}
		st.inflight++
		c.postSubscription(tagChurn)
		return
	}
	if st.inflight == 0 { // every connection is gone
		l.churn = nil
		st.done()
	}
}

func (l *loop) churnDone(c *subConn, status int, body []byte, latency int64, err error) {
	st := l.churn
	if st == nil {
		return
	}
	st.inflight--
	st.hist.Record(latency)
	switch {
	case err != nil:
		st.bad++
		st.errs[err.Error()]++
	case status == 204 || status == 200:
		st.ok++
	default:
		st.bad++
		st.errs[fmt.Sprintf("%d %s", status, bytes.TrimSpace(body))]++
	}
	if l.now < st.until {
		l.churnNext()
		return
	}
	if st.inflight == 0 {
		l.churn = nil
		st.done()
	}
}

//go:build linux

package bench

import (
	"errors"
	"fmt"
	"syscall"
)

// A request is one pipelined HTTP/1.1 request and who waits for its answer.
type request struct {
	data    []byte
	sentAt  int64
	waiter  responseWaiter
	tag     int
	retried bool
	src     *[4]byte // local address the request must come from (the stream's), nil = any
}

// responseWaiter is told the outcome of a request on the loop's thread:
// the status (0 with err on a transport failure) and the latency.
type responseWaiter interface {
	requestDone(tag int, status int, body []byte, latency int64, err error)
}

// reqConn is a keep-alive socket carrying pipelined requests (subscription
// POSTs) for one loop. Writes are gathered and sent once per loop round.
type reqConn struct {
	l       *loop
	fd      int
	open    bool // connect finished
	wbuf    []byte
	pending []*request // sent or queued, oldest first
	resp    respReader
	dirty   bool
	src     *[4]byte // bound local address, nil = kernel's choice
}

func (r *reqConn) send(q *request) {
	q.sentAt = r.l.now
	r.pending = append(r.pending, q)
	if r.fd <= 0 {
		if err := r.connect(); err != nil {
			r.failAll(err)
			return
		}
	}
	r.wbuf = append(r.wbuf, q.data...)
	r.markDirty()
}

func (r *reqConn) markDirty() {
	if !r.dirty && r.open {
		r.dirty = true
		r.l.dirty = append(r.l.dirty, r)
	}
}

func (r *reqConn) connect() error {
	fd, err := dialFrom(r.l.lg.addr, 0, r.src)
	if err != nil {
		return err
	}
	if err := r.l.register(fd, r); err != nil {
		syscall.Close(fd)
		return err
	}
	r.fd, r.open, r.resp = fd, false, respReader{}
	r.l.stats.reqConnects++
	return nil
}

func (r *reqConn) handle(ev uint32) {
	if !r.open {
		if ev&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		if err := connectError(r.fd); err != nil {
			r.reconnect(fmt.Errorf("request socket connect: %w", err))
			return
		}
		r.open = true
		r.markDirty()
		return
	}
	if ev&syscall.EPOLLOUT != 0 && len(r.wbuf) > 0 {
		r.markDirty()
	}
	if ev&(syscall.EPOLLIN|epollRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0 {
		r.readAll()
	}
}

func (r *reqConn) readAll() {
	for r.fd > 0 {
		n, err := syscall.Read(r.fd, r.l.rbuf)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) {
				return
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			r.reconnect(fmt.Errorf("request socket read: %w", err))
			return
		}
		if n == 0 {
			r.resp.eof(r)
			r.reconnect(errors.New("server closed the keep-alive connection"))
			return
		}
		r.l.now = nowNano()
		if err := r.resp.feed(r.l.rbuf[:n], r); err != nil {
			r.reconnect(fmt.Errorf("request socket: bad response: %w", err))
			return
		}
		if r.resp.Close && len(r.pending) == 0 {
			r.reconnect(nil)
			return
		}
		if n < len(r.l.rbuf) {
			return
		}
	}
}

func (r *reqConn) onResponse(status int, body []byte) {
	if len(r.pending) == 0 {
		r.l.stats.strayResponses++
		return
	}
	q := r.pending[0]
	r.pending[0] = nil
	r.pending = r.pending[1:]
	q.waiter.requestDone(q.tag, status, body, r.l.now-q.sentAt, nil)
}

// flush writes what is queued; called at the end of a loop round.
func (r *reqConn) flush() {
	r.dirty = false
	if !r.open || len(r.wbuf) == 0 {
		return
	}
	rest, err := writeSome(r.fd, r.wbuf)
	if err != nil {
		r.reconnect(fmt.Errorf("request socket write: %w", err))
		return
	}
	r.l.stats.reqWrites++
	if len(rest) == 0 {
		r.wbuf = r.wbuf[:0]
	} else {
		r.wbuf = append(r.wbuf[:0], rest...)
	}
}

// reconnect replaces a broken socket and resends the requests still
// unanswered, once each (subscription POSTs are idempotent).
func (r *reqConn) reconnect(cause error) {
	old := r.pending
	r.close(nil)
	if len(old) == 0 {
		return
	}
	var again []*request
	for _, q := range old {
		if q.retried {
			q.waiter.requestDone(q.tag, 0, nil, r.l.now-q.sentAt, cause)
			continue
		}
		q.retried = true
		again = append(again, q)
	}
	if len(again) == 0 {
		return
	}
	r.l.stats.reqRetries += int64(len(again))
	if err := r.connect(); err != nil {
		r.pending = again
		r.failAll(err)
		return
	}
	for _, q := range again {
		r.pending = append(r.pending, q)
		r.wbuf = append(r.wbuf, q.data...)
	}
}

func (r *reqConn) failAll(err error) {
	pend := r.pending
	r.pending = nil
	for _, q := range pend {
		q.waiter.requestDone(q.tag, 0, nil, r.l.now-q.sentAt, err)
	}
}

// close drops the socket; with err, unanswered requests fail with it.
func (r *reqConn) close(err error) {
	if r.fd > 0 {
		r.l.unregister(r.fd)
	}
	r.fd, r.open, r.wbuf = 0, false, r.wbuf[:0]
	if err != nil {
		r.failAll(err)
	}
	r.pending = nil
}

// request sends q on the loop's next request socket.
func (l *loop) request(q *request) {
	if q.src != nil {
		l.requestFrom(q)
		return
	}
	r := l.reqs[l.reqNext]
	l.reqNext = (l.reqNext + 1) % len(l.reqs)
	r.send(q)
}

func (l *loop) flushRequests() {
	for i, r := range l.dirty {
		r.flush()
		l.dirty[i] = nil
	}
	l.dirty = l.dirty[:0]
}

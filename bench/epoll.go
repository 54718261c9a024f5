//go:build linux

package bench

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Edge-triggered readiness for every socket: a handler reads or writes until
// EAGAIN (or a short read) and is told again only when something new happens.
const (
	epollET    = 1 << 31
	epollRDHUP = 0x2000
	sockEvents = syscall.EPOLLIN | syscall.EPOLLOUT | epollRDHUP | epollET
)

// fdHandler is a socket owned by a loop.
type fdHandler interface {
	handle(events uint32)
}

// loop is one epoll event loop on its own locked OS thread. The load
// generator runs GOMAXPROCS of them and spreads connections across them;
// everything a loop owns is touched only from its thread, and other
// goroutines reach it through post/call.
type loop struct {
	lg     *LoadGen
	id     int
	epfd   int
	wakefd int

	mu      sync.Mutex
	cmds    []func()
	running []func()
	stop    bool

	handlers []fdHandler // by fd
	rbuf     []byte      // shared read buffer: connections keep no buffer of their own
	now      int64       // unix ns, refreshed before each read

	reqs        []*reqConn           // keep-alive request sockets, used round-robin
	srcReqs     map[[4]byte]*reqConn // request sockets bound to a source address (ConnSpec.SourceIPs)
	reqNext     int
	dirty       []*reqConn // request sockets with bytes to write after this round
	subs        []*subConn // every subscriber connection of this loop, by start order
	inflight    int        // connects started and not yet subscribed or failed
	maxInflight int
	queued      []*subConn // connects waiting for an inflight slot

	churn *churnState
	stats loopStats
	done  chan struct{}
}

func newLoop(lg *LoadGen, id int) (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	r, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		syscall.Close(epfd)
		return nil, fmt.Errorf("eventfd2: %w", errno)
	}
	l := &loop{
		lg:     lg,
		id:     id,
		epfd:   epfd,
		wakefd: int(r),
		rbuf:   make([]byte, 256<<10),
		done:   make(chan struct{}),
	}
	l.stats.reset()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.wakefd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, l.wakefd, &ev); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	return l, nil
}

func (l *loop) closeFDs() {
	syscall.Close(l.wakefd)
	syscall.Close(l.epfd)
}

// run is the event loop; it returns after stopLoop.
func (l *loop) run() {
	runtime.LockOSThread()
	// Unlock before returning: a goroutine that exits locked takes its thread
	// down, and a server spawned from that thread (Pdeathsig) dies with it.
	defer runtime.UnlockOSThread()
	defer close(l.done)
	events := make([]syscall.EpollEvent, 1024)
	for {
		n, err := syscall.EpollWait(l.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			panic(fmt.Sprintf("epoll_wait: %v", err)) // a bug in the harness, not a server behaviour
		}
		l.stats.wakeups++
		l.now = time.Now().UnixNano()
		for i := range n {
			fd := int(events[i].Fd)
			if fd == l.wakefd {
				var b [8]byte
				syscall.Read(l.wakefd, b[:])
				continue
			}
			if fd < len(l.handlers) && l.handlers[fd] != nil {
				l.handlers[fd].handle(events[i].Events)
			}
		}
		if l.runCommands() {
			l.shutdown()
			return
		}
		l.flushRequests()
	}
}

// post queues f to run on the loop's thread.
func (l *loop) post(f func()) {
	l.mu.Lock()
	wake := len(l.cmds) == 0
	l.cmds = append(l.cmds, f)
	l.mu.Unlock()
	if wake {
		one := uint64(1)
		syscall.Write(l.wakefd, (*[8]byte)(unsafe.Pointer(&one))[:])
	}
}

// call runs f on the loop's thread and waits for it.
func (l *loop) call(f func()) {
	ch := make(chan struct{})
	l.post(func() { f(); close(ch) })
	<-ch
}

func (l *loop) runCommands() (stop bool) {
	l.mu.Lock()
	l.running, l.cmds = l.cmds, l.running[:0]
	stop = l.stop
	l.mu.Unlock()
	for i, f := range l.running {
		f()
		l.running[i] = nil
	}
	return stop
}

func (l *loop) stopLoop() {
	l.mu.Lock()
	l.stop = true
	l.mu.Unlock()
	l.post(func() {})
	<-l.done
}

func (l *loop) shutdown() {
	l.queued = nil // closing a connection frees an inflight slot: start nothing new
	for _, c := range l.subs {
		c.close(closeLocal)
	}
	for _, r := range l.reqs {
		r.close(errors.New("load generator stopped"))
	}
	for _, r := range l.srcReqs {
		r.close(errors.New("load generator stopped"))
	}
	l.closeFDs()
}

// register adds fd to the epoll set with h as its handler.
func (l *loop) register(fd int, h fdHandler) error {
	for fd >= len(l.handlers) {
		l.handlers = append(l.handlers, make([]fdHandler, len(l.handlers)+1024)...)
	}
	l.handlers[fd] = h
	ev := syscall.EpollEvent{Events: sockEvents, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.handlers[fd] = nil
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

// unregister closes fd; closing removes it from the epoll set.
func (l *loop) unregister(fd int) {
	if fd < len(l.handlers) {
		l.handlers[fd] = nil
	}
	syscall.Close(fd)
}

// dial starts a non-blocking connect to addr; the socket reports EPOLLOUT when done.
func dial(addr *syscall.SockaddrInet4, rcvbuf int) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	if rcvbuf > 0 {
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
	}
	if err := syscall.Connect(fd, addr); err != nil && !errors.Is(err, syscall.EINPROGRESS) {
		syscall.Close(fd)
		return -1, fmt.Errorf("connect: %w", err)
	}
	return fd, nil
}

// connectError is the outcome of a non-blocking connect.
func connectError(fd int) error {
	v, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
	if err != nil {
		return err
	}
	if v != 0 {
		return syscall.Errno(v)
	}
	return nil
}

// writeSome writes as much of p as the socket takes; it returns the rest.
func writeSome(fd int, p []byte) ([]byte, error) {
	for len(p) > 0 {
		n, err := syscall.Write(fd, p)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) {
				return p, nil
			}
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return p, err
		}
		p = p[n:]
	}
	return nil, nil
}

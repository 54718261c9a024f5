package broker

import (
	"sync"

	"golang.org/x/sys/unix"
)

// hangupWatcher notices adopted connections whose peer went away, without a
// goroutine (or a pending read) per connection: one epoll set per broker
// reports EPOLLRDHUP for every adopted socket.
type hangupWatcher struct {
	epfd    int
	wakefd  int // an eventfd in the set: written to stop the watcher
	mu      sync.Mutex
	clients map[int32]*Client
	done    chan struct{}
}

// newHangupWatcher returns nil when epoll is unavailable: disconnects are
// then noticed on the next write.
func newHangupWatcher() *hangupWatcher {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wakefd)
		return nil
	}
	w := &hangupWatcher{epfd: epfd, wakefd: wakefd, clients: make(map[int32]*Client), done: make(chan struct{})}
	go w.run()
	return w
}

// close stops the watcher's goroutine.
func (w *hangupWatcher) close() {
	if w == nil {
		return
	}
	_, _ = unix.Write(w.wakefd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	<-w.done
	_ = unix.Close(w.epfd)
	_ = unix.Close(w.wakefd)
}

// watchHangup starts watching cs's socket for c; it returns a func that stops
// watching, to be called before the connection is closed.
func (w *hangupWatcher) watch(c *Client, cs *connState) (stop func()) {
	if w == nil || cs.raw == nil {
		return func() {}
	}
	var fd int32 = -1
	_ = cs.raw.Control(func(f uintptr) { fd = int32(f) })
	if fd < 0 {
		return func() {}
	}
	w.mu.Lock()
	w.clients[fd] = c
	w.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: fd}
	if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
		w.mu.Lock()
		delete(w.clients, fd)
		w.mu.Unlock()
		return func() {}
	}
	return func() {
		_ = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		w.mu.Lock()
		if w.clients[fd] == c {
			delete(w.clients, fd)
		}
		w.mu.Unlock()
	}
}

func (w *hangupWatcher) run() {
	defer close(w.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(w.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(w.wakefd) {
				return
			}
			w.mu.Lock()
			c := w.clients[ev.Fd]
			w.mu.Unlock()
			if c != nil {
				c.Close(ReasonClientGone)
			}
		}
	}
}

// AdoptSupported tells handlers whether hijacked streams (Adopt) are served
// here; without epoll they keep a goroutine each (Serve).
const AdoptSupported = true

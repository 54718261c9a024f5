//go:build !linux

package broker

// Without epoll, a peer that went away is noticed on the next write
// (heartbeats bound the delay).
type hangupWatcher struct{}

func newHangupWatcher() *hangupWatcher { return nil }

func (w *hangupWatcher) close() {}

func (w *hangupWatcher) watch(*Client, *connState) (stop func()) { return func() {} }

// AdoptSupported tells handlers whether hijacked streams (Adopt) are served
// here; without epoll they keep a goroutine each (Serve).
const AdoptSupported = false

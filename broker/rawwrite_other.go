//go:build !(linux || darwin || openbsd)

package broker

// newRawWrite returns nil where sockets are not file descriptors (or there is
// no writev in golang.org/x/sys/unix; such platforms do not adopt streams anyway): adopted
// connections are then written with a short deadline instead.
func (cs *connState) newRawWrite() func(fd uintptr) bool { return nil }

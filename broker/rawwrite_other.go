//go:build !unix

package broker

// newRawWrite returns nil where sockets are not file descriptors: adopted
// connections are then written with a short deadline instead.
func (cs *connState) newRawWrite() func(fd uintptr) bool { return nil }

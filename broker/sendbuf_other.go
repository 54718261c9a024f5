//go:build !linux

package broker

import "net"

// limitUnsent does nothing where streams are not adopted (no epoll).
func limitUnsent(*net.TCPConn) {}

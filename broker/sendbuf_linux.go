package broker

import (
	"net"

	"golang.org/x/sys/unix"
)

// unsentLimit is how many bytes an adopted socket holds that the peer has
// not been sent yet (TCP_NOTSENT_LOWAT): writes beyond it get EAGAIN. Bytes
// in flight to a reading peer are not limited by it, only bytes waiting for
// one that stopped reading, so a stalled stream's backlog stays in our
// client_queue, as shared references, instead of each socket taking (and
// the writers copying) a send buffer's worth, 3,000 stalled streams x 512 KB.
const unsentLimit = 32 << 10

// limitUnsent applies unsentLimit to tc, where the kernel supports it.
func limitUnsent(tc *net.TCPConn) {
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, unsentLimit)
	})
}

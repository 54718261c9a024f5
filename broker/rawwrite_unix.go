//go:build linux || darwin || openbsd

package broker

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// newRawWrite returns the non-blocking vectored write of cs.wbufs on a file
// descriptor: a batch's pieces go out in one system call, without being
// copied into one buffer first.
func (cs *connState) newRawWrite() func(fd uintptr) bool {
	return func(fd uintptr) bool {
		for {
			cs.wn, cs.werr = unix.Writev(int(fd), cs.wbufs)
			if cs.werr != syscall.EINTR {
				return true // never park: EAGAIN is reported, not waited for
			}
		}
	}
}

//go:build unix

package broker

import "syscall"

// newRawWrite returns the non-blocking write of cs.wbuf on a file descriptor.
func (cs *connState) newRawWrite() func(fd uintptr) bool {
	return func(fd uintptr) bool {
		for {
			cs.wn, cs.werr = syscall.Write(int(fd), cs.wbuf)
			if cs.werr != syscall.EINTR {
				return true // never park: EAGAIN is reported, not waited for
			}
		}
	}
}

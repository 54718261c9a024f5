//go:build unix

package realtime

import "syscall"

// defaultMaxClients leaves room under the open-file limit for the admin API,
// upstream lookups, listeners and Caddy's own files, so that at the limit new
// streams get 503 while accepts, the admin API and open streams keep working.
func defaultMaxClients() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<31 {
		return 0
	}
	return maxClientsFor(int(lim.Cur))
}

//go:build linux

package bench

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// tcpEstablished is the state code of an established socket in /proc/net/tcp.
const tcpEstablished = 0x01

// serverSocketStates reads /proc/net/tcp and tcp6 and returns, for every
// socket whose local port is serverPort, its state keyed by the peer's port.
// A server that closed a stalled client's stream leaves its side in
// FIN_WAIT1 (unsent data still queued) while the client sees nothing yet.
func serverSocketStates(serverPort int) map[int]int {
	out := map[int]int{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		file, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 {
				continue
			}
			local, remote := portOf(fields[1]), portOf(fields[2])
			if local != serverPort {
				continue
			}
			st, err := strconv.ParseInt(fields[3], 16, 32)
			if err == nil {
				out[remote] = int(st)
			}
		}
		file.Close()
	}
	return out
}

// portOf reads the port of an "ADDR:PORT" hex pair.
func portOf(s string) int {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return -1
	}
	p, err := strconv.ParseInt(s[i+1:], 16, 32)
	if err != nil {
		return -1
	}
	return int(p)
}

// evictedCount is how many of the stalled connections' server sockets are no
// longer established (or gone), plus those the client already saw closed.
func evictedCount(lg *LoadGen, g *ConnGroup, serverPort int) int {
	ports, gone := lg.StalledPorts(g)
	states := serverSocketStates(serverPort)
	for _, p := range ports {
		if st, ok := states[p]; !ok || st != tcpEstablished {
			gone++
		}
	}
	return gone
}

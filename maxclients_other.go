//go:build !unix

package realtime

func defaultMaxClients() int { return 0 }

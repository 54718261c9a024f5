// Package cluster holds the tests of several Caddy nodes sharing a broker on
// NATS JetStream: a 3-server nats-server cluster in the test process, three
// Caddy processes (cmd/caddy) on it and a fourth Caddy as their load balancer.
// Run them with `go test ./e2e/cluster/` (CADDY_BIN names a Caddy built from
// this tree; without it the tests build one). CLUSTER_CHAOS=full runs the long
// chaos loop.
package cluster

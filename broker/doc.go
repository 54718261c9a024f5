// Package broker is the realtime hub: clients, the topic index, fan-out of record
// events and custom messages into per-client byte-bounded queues, hooks, and stats.
// It is plain Go (no Caddy): the handler and admin packages drive it over net/http.
//
// Where things are: frames are encoded in frame.go (nothing else writes SSE
// or HTTP chunk bytes), a stream's end is decided in lifecycle.go (for both
// writers: Serve's goroutine in client.go and the writer pool in conn.go),
// per-client queues in queue.go, the topic index in index.go.
//
// # Lock order
//
// A goroutine holding one of these locks only takes locks further down:
//
//  1. Broker.pubMu: one publish (Publish, SendMessage) or a resume's replay at
//     a time, so every client sees one order. The transport delivers under it.
//  2. Client.authMu (auth changes) or Client.subsMu (the subscription set).
//     They are never held together: Disconnect and a resume take one after
//     the other.
//  3. An index shard's mu. Fan-out holds it (read) while it queues frames and
//     runs OnMessageSend handlers; replaceSubscriptions and Disconnect take it
//     (write) under subsMu.
//  4. Client.mu: the queue, the closed flag and the connection's schedule.
//  5. writerPool.mu: Close takes it under Client.mu to hand an adopted
//     connection to a writer.
//
// Leaves, taken under any of the above and holding nothing while held: a
// client shard's mu (except sessionStore.mu, taken under it as Disconnect
// unregisters a client: a resume then finds the client, its session or its
// leaving mark), identityIndex.mu, ipCounts.mu, sessionStore.mu (taken
// under subsMu when Disconnect keeps a session; a resume waits on it for a
// leaving client's session holding nothing else), Event.payloadsMu,
// filterCache.mu, hangupWatcher.mu (released before it closes a client),
// the memory transport's mu (released before it delivers), and Hook.mu
// (released before handlers run). Two shards of one kind are never held at
// once. Policy.ForgetAuth runs under pubMu.
//
// So an OnMessageSend handler, which runs under pubMu and an index shard,
// must not publish, subscribe or Disconnect; OnConnect, OnSubscribe and
// OnDisconnect handlers run with no broker lock held.
package broker

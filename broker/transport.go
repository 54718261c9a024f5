package broker

import (
	"context"
	"errors"
	"time"
)

// ErrBatchTooLarge is wrapped by a transport refusing a batch it cannot
// publish all or none: the request is at fault, not the transport.
var ErrBatchTooLarge = errors.New("too many records in one publish")

// Position is a place in an order: the position of a record in an epoch.
type Position struct {
	Epoch    string
	Position uint64
}

// Record is one event or custom message at its position in a broker's order.
type Record struct {
	Position uint64
	Time     time.Time // when it was published
	Event    *Event    // set for a record event
	Message  *Message  // set for a custom message
}

// Transport carries a broker's events and custom messages in one order and
// keeps enough of it to serve a resuming client. The in-memory transport is
// the default; a transport shared by several nodes (NATS JetStream) plugs in
// here (DESIGN.md §6).
//
// Delivery is the transport's: it hands every record, positioned, to the
// deliver function given to Start, in order and one at a time, whichever
// node published it. Publish only has to get the records into the order.
type Transport interface {
	// Start begins delivering to deliver. It must not block on the network:
	// a transport whose servers are down starts anyway and keeps trying.
	// from is what the broker delivered last (a transport replacing another
	// on a config reload): a transport sharing that order delivers every
	// record after it; others start at their own end.
	Start(deliver func(*Record), from Position) error
	// Publish puts recs (Event or Message set) into the order, all or none,
	// and returns once the transport holds them: the position of the last
	// one and how many were new (an Event whose ID was published recently
	// is dropped). An error means none of them was published.
	Publish(ctx context.Context, recs []*Record) (last uint64, published int, err error)
	// Epoch names the order; positions mean something only within it.
	Epoch() string
	// Last is the position of the last record delivered.
	Last() uint64
	// ReadFrom calls fn with each delivered record after position, in
	// order, until fn returns false. It reports false, calling fn for
	// nothing, when the records after position are not all held (another
	// epoch, a position older than the log or not reached yet).
	ReadFrom(epoch string, position uint64, fn func(*Record) bool) bool
	// SetLimits changes how much is kept for resuming (a config reload).
	SetLimits(window time.Duration, maxBytes int64)
	// Close stops delivery and releases the transport's resources.
	Close() error
}

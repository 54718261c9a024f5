package broker

import "time"

// Record is one event or custom message at its position in a broker's order.
type Record struct {
	Position uint64
	Time     time.Time // when it was published
	Event    *Event    // set for a record event
	Message  *Message  // set for a custom message
}

// Transport carries a broker's events and custom messages in one order and
// keeps enough of it to serve a resuming client. The in-memory transport is
// the default; a transport shared by several nodes plugs in here (DESIGN.md §6).
type Transport interface {
	// Epoch names the order; positions mean something only within it.
	Epoch() string
	// Publish gives r (Event or Message set) the next position and delivers it.
	// The broker calls it one record at a time, in its publish order.
	Publish(r *Record)
	// ReadFrom calls fn with each record after position, in order, until fn
	// returns false. It reports false, calling fn for nothing, when the
	// records after position are not all held (another epoch, a position
	// older than the log or not reached yet).
	ReadFrom(epoch string, position uint64, fn func(*Record) bool) bool
}

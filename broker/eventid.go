package broker

import (
	"crypto/sha256"
	"strconv"
	"strings"
)

// Event ids. A PB_CONNECT frame's id is the bare client id, byte-identical to
// PocketBase (its JS SDK reads the clientId from there). Every other frame
// carries its position in the broker's order: "<clientId>.<epoch>.<position>".
// The format is private; clients echo it back as Last-Event-ID.

// epochLen is the length of a broker's epoch, drawn from the client id alphabet.
const epochLen = 8

// MaxEventIDLen bounds a Last-Event-ID worth parsing.
const MaxEventIDLen = 1024

// appendEventID appends "<clientId>[.<epoch>.<pos>]" (no position when pos
// is 0); frame.go puts it on a frame's id line.
func appendEventID(b []byte, clientID, epoch string, pos uint64) []byte {
	b = append(b, clientID...)
	if pos > 0 {
		b = append(b, '.')
		b = append(b, epoch...)
		b = append(b, '.')
		b = strconv.AppendUint(b, pos, 10)
	}
	return b
}

// eventIDLen is the length appendEventID appends.
func eventIDLen(clientID, epoch string, pos uint64) int {
	n := len(clientID)
	if pos > 0 {
		n += 2 + len(epoch) + 1
		for pos >= 10 {
			pos /= 10
			n++
		}
	}
	return n
}

// EventID is a parsed frame id.
type EventID struct {
	ClientID string
	Epoch    string // empty for a PB_CONNECT id
	Position uint64 // 0 for a PB_CONNECT id
}

// ParseEventID parses an id this package wrote; anything else (longer than
// MaxEventIDLen, characters outside the alphabet, a position that is not a
// canonical positive decimal) is refused.
func ParseEventID(s string) (EventID, bool) {
	if len(s) > MaxEventIDLen {
		return EventID{}, false
	}
	client, rest, positioned := strings.Cut(s, ".")
	if !validClientID(client) {
		return EventID{}, false
	}
	if !positioned {
		return EventID{ClientID: client}, true
	}
	epoch, num, ok := strings.Cut(rest, ".")
	if !ok || len(epoch) != epochLen || !inAlphabet(epoch) || num == "" || num[0] == '0' || len(num) > 20 {
		return EventID{}, false
	}
	for i := 0; i < len(num); i++ {
		if num[i] < '0' || num[i] > '9' {
			return EventID{}, false
		}
	}
	pos, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return EventID{}, false
	}
	return EventID{ClientID: client, Epoch: epoch, Position: pos}, true
}

func validClientID(s string) bool { return len(s) == 40 && inAlphabet(s) }

func inAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// Epoch names the broker's current order of events; a position means
// something only within its epoch.
func (b *Broker) Epoch() string { return b.Transport().Epoch() }

// EpochOf derives an epoch from what names an order, e.g. a stream's name and
// creation time: every node sharing that order computes the same one.
func EpochOf(name string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	sum := sha256.Sum256([]byte(name))
	out := make([]byte, epochLen)
	for i := range out {
		out[i] = alphabet[int(sum[i])%len(alphabet)]
	}
	return string(out)
}

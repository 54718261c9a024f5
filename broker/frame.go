package broker

import "strconv"

// The wire format, written here and nowhere else. A frame is
//
//	id:<event id>\n          the client's own line (eventid.go has the id's format)
//	event:<name>\n           \
//	data:<data>\n             > the tail: built once per topic string and shared
//	\n                       /  by every subscriber of it (queue.go)
//
// PB_CONNECT is a frame named PB_CONNECT whose id is the bare client id,
// byte-identical to PocketBase's on a fresh stream. A heartbeat is the SSE
// comment ":\n\n". On an adopted HTTP/1.1 connection (conn.go) each frame and
// each heartbeat is one chunk, "<hex size>\r\n<bytes>\r\n", and a body that
// ends cleanly ends with "0\r\n\r\n".

const (
	idPrefix     = "id:"
	eventPrefix  = "event:"
	dataPrefix   = "\ndata:" // ends the event line
	frameEnd     = "\n\n"    // ends the data line and the frame
	connectEvent = "PB_CONNECT"

	chunkTrailer = "\r\n"
)

var (
	heartbeatFrame = []byte(":\n\n")
	heartbeatChunk = appendChunk(nil, heartbeatFrame)
	chunkedBodyEnd = []byte("0\r\n\r\n") // the last chunk of a chunked body
)

// frameTail is the part of a frame shared by every subscriber of one topic
// string: "event:<name>\ndata:<data>\n\n".
func frameTail(name string, data []byte) []byte {
	t := make([]byte, 0, len(eventPrefix)+len(name)+len(dataPrefix)+len(data)+len(frameEnd))
	t = append(t, eventPrefix...)
	t = append(t, name...)
	t = append(t, dataPrefix...)
	t = append(t, data...)
	return append(t, frameEnd...)
}

// tailData is the data of a tail that frameTail built for name. It is capped,
// so that appending to it copies instead of overwriting the tail's end (and
// the frame every other subscriber gets).
func tailData(tail []byte, name string) []byte {
	start := len(eventPrefix) + len(name) + len(dataPrefix)
	end := len(tail) - len(frameEnd)
	return tail[start:end:end]
}

// connectFrame is PB_CONNECT's tail on a fresh stream, as PocketBase writes it:
// data:{"clientId":"..."}.
func connectFrame(id string) []byte {
	return frameTail(connectEvent, []byte(`{"clientId":"`+id+`"}`))
}

// resumeFrame is PB_CONNECT's tail on a stream that came with a Last-Event-ID:
// data:{"clientId":"...","resumed":true|false}.
func resumeFrame(id string, resumed bool) []byte {
	return frameTail(connectEvent, []byte(`{"clientId":"`+id+`","resumed":`+strconv.FormatBool(resumed)+`}`))
}

// appendIDLine appends "id:<event id>\n" (the bare client id when pos is 0).
func appendIDLine(dst []byte, clientID, epoch string, pos uint64) []byte {
	dst = append(dst, idPrefix...)
	dst = appendEventID(dst, clientID, epoch, pos)
	return append(dst, '\n')
}

// idLineLen is the length appendIDLine appends.
func idLineLen(clientID, epoch string, pos uint64) int {
	return len(idPrefix) + eventIDLen(clientID, epoch, pos) + 1
}

// frameLen is the length of one frame on the wire before chunk framing.
func frameLen(clientID, epoch string, pos uint64, tail []byte) int {
	return idLineLen(clientID, epoch, pos) + len(tail)
}

// appendFrame queues one frame: the client's id line and the shared tail,
// as one HTTP/1.1 chunk when chunked. given: the caller already holds the
// queue's reference to tail (appendShared).
func (q *frameQueue) appendFrame(clientID, epoch string, pos uint64, tail *sharedTail, chunked, given bool) {
	start := len(q.own)
	if chunked {
		q.own = appendChunkHeader(q.own, frameLen(clientID, epoch, pos, tail.b))
	}
	q.own = appendIDLine(q.own, clientID, epoch, pos)
	q.grewOwn(start)
	q.appendShared(tail, given)
	if chunked {
		q.appendOwnString(chunkTrailer)
	}
}

// appendChunk queues p, copied, as one HTTP/1.1 chunk.
func (q *frameQueue) appendChunk(p []byte) {
	start := len(q.own)
	q.own = appendChunk(q.own, p)
	q.grewOwn(start)
}

func appendChunkHeader(dst []byte, size int) []byte {
	dst = strconv.AppendInt(dst, int64(size), 16)
	return append(dst, '\r', '\n')
}

// appendChunk appends p as one HTTP/1.1 chunk; p must not be empty (an empty
// chunk ends the body).
func appendChunk(dst, p []byte) []byte {
	dst = appendChunkHeader(dst, len(p))
	dst = append(dst, p...)
	return append(dst, chunkTrailer...)
}

//go:build linux

package bench

import "bytes"

// maxSSELine bounds one SSE line carried across reads.
const maxSSELine = 1 << 20

// eventSink receives complete SSE events. The slices are only valid during the call.
type eventSink interface {
	onEvent(event, id, data []byte)
}

// sseParser splits a text/event-stream body (LF or CRLF line ends) into
// events. Fields are referenced in place when an event sits within one
// feed, and copied only when it spans feeds.
type sseParser struct {
	line []byte // a line split across feeds

	event, id, data     []byte // fields of the event being read
	eventOwn, idOwn     []byte // owned storage for fields that outlive a feed
	dataOwn             []byte
	hasData             bool
	dataOwned           bool // data already lives in dataOwn
	eventOwned, idOwned bool

	Comments int // comment lines seen (heartbeats)
	Overflow bool
}

// feed parses p, calling sink for each complete event.
func (s *sseParser) feed(p []byte, sink eventSink) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(s.line)+len(p) > maxSSELine {
				s.Overflow = true
				s.line = s.line[:0]
				return
			}
			s.line = append(s.line, p...)
			break
		}
		if len(s.line) > 0 {
			s.line = append(s.line, p[:i]...)
			s.processLine(s.line, true, sink)
			s.line = s.line[:0]
		} else {
			s.processLine(p[:i], false, sink)
		}
		p = p[i+1:]
	}
	s.own()
}

// processLine handles one line without its LF; reused says line's memory
// is about to be overwritten, so values taken from it must be copied now.
func (s *sseParser) processLine(line []byte, reused bool, sink eventSink) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) == 0 {
		if s.hasData {
			sink.onEvent(s.event, s.id, s.data)
		}
		s.event, s.data = nil, nil
		s.hasData, s.dataOwned, s.eventOwned = false, false, false
		return
	}
	if line[0] == ':' {
		s.Comments++
		return
	}
	name, value, found := bytes.Cut(line, []byte(":"))
	if found && len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	switch string(name) {
	case "data":
		if s.hasData {
			if !s.dataOwned {
				s.dataOwn = append(s.dataOwn[:0], s.data...)
			}
			s.dataOwn = append(s.dataOwn, '\n')
			s.dataOwn = append(s.dataOwn, value...)
			s.data, s.dataOwned = s.dataOwn, true
			return
		}
		s.hasData = true
		if reused {
			s.dataOwn = append(s.dataOwn[:0], value...)
			s.data, s.dataOwned = s.dataOwn, true
		} else {
			s.data, s.dataOwned = value, false
		}
	case "event":
		if reused {
			s.eventOwn = append(s.eventOwn[:0], value...)
			s.event, s.eventOwned = s.eventOwn, true
		} else {
			s.event, s.eventOwned = value, false
		}
	case "id":
		if bytes.IndexByte(value, 0) >= 0 {
			return // the spec ignores ids with NUL
		}
		if reused {
			s.idOwn = append(s.idOwn[:0], value...)
			s.id, s.idOwned = s.idOwn, true
		} else {
			s.id, s.idOwned = value, false
		}
	}
}

// own copies fields that still reference the caller's buffer.
func (s *sseParser) own() {
	if s.hasData && !s.dataOwned {
		s.dataOwn = append(s.dataOwn[:0], s.data...)
		s.data, s.dataOwned = s.dataOwn, true
	}
	if s.event != nil && !s.eventOwned {
		s.eventOwn = append(s.eventOwn[:0], s.event...)
		s.event, s.eventOwned = s.eventOwn, true
	}
	if s.id != nil && !s.idOwned {
		s.idOwn = append(s.idOwn[:0], s.id...)
		s.id, s.idOwned = s.idOwn, true
	}
}

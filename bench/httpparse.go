//go:build linux

package bench

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// maxHeadSize bounds a response head; nothing we talk to sends more.
const maxHeadSize = 64 << 10

var crlfcrlf = []byte("\r\n\r\n")

// respHead parses an HTTP/1.1 response head incrementally.
type respHead struct {
	buf           []byte // bytes of a head split across reads
	Status        int
	Chunked       bool
	ContentLength int64 // -1 when absent
	Close         bool  // Connection: close
}

// feed consumes bytes of p up to the end of the head. It returns how many
// bytes it used and whether the head is complete.
func (h *respHead) feed(p []byte) (int, bool, error) {
	if len(h.buf) == 0 {
		if i := bytes.Index(p, crlfcrlf); i >= 0 {
			return i + 4, true, h.parse(p[:i+2])
		}
		if len(p) > maxHeadSize {
			return 0, false, errors.New("response head too large")
		}
		h.buf = append(h.buf, p...)
		return len(p), false, nil
	}
	from := max(0, len(h.buf)-3)
	h.buf = append(h.buf, p...)
	i := bytes.Index(h.buf[from:], crlfcrlf)
	if i < 0 {
		if len(h.buf) > maxHeadSize {
			return 0, false, errors.New("response head too large")
		}
		return len(p), false, nil
	}
	end := from + i + 4
	used := end - (len(h.buf) - len(p))
	err := h.parse(h.buf[:end-2])
	h.buf = h.buf[:0]
	return used, true, err
}

// parse reads the status line and the headers we act on; head ends with CRLF.
func (h *respHead) parse(head []byte) error {
	h.Status, h.Chunked, h.ContentLength, h.Close = 0, false, -1, false
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(line, []byte("HTTP/1.")) || len(line) < 12 {
		return fmt.Errorf("bad status line %q", line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return fmt.Errorf("bad status line %q", line)
	}
	h.Status = code
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			h.Chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("bad Content-Length %q", value)
			}
			h.ContentLength = n
		case bytes.EqualFold(name, []byte("Connection")):
			h.Close = bytes.EqualFold(value, []byte("close"))
		}
	}
	return nil
}

// bodyless reports whether a response to a non-HEAD request has no body at all.
func (h *respHead) bodyless() bool {
	return h.Status == 204 || h.Status == 304 || (h.Status >= 100 && h.Status < 200)
}

// bodySink receives the decoded bytes of a chunked body; p is only valid during the call.
type bodySink interface {
	body(p []byte)
}

// chunked decoder states.
const (
	chSize = iota
	chExt
	chSizeLF
	chData
	chDataCR
	chDataLF
	chTrailer
	chTrailerLine
	chTrailerLF
	chDone
)

// chunkDecoder decodes a Transfer-Encoding: chunked body incrementally,
// passing data through without copying.
type chunkDecoder struct {
	state  uint8
	digits uint8
	size   int64 // chunk size being read, then bytes left in the chunk
}

// feed decodes p, giving data to sink. It returns how many bytes it used
// (less than len(p) only when the body ended) and whether the body ended.
func (d *chunkDecoder) feed(p []byte, sink bodySink) (int, bool, error) {
	i := 0
	for i < len(p) {
		c := p[i]
		switch d.state {
		case chSize:
			switch {
			case c == '\r':
				d.state = chSizeLF
			case c == '\n':
				d.endSizeLine()
			case c == ';' || c == ' ' || c == '\t':
				d.state = chExt
			default:
				v := unhex(c)
				if v < 0 || d.digits >= 15 {
					return i, false, fmt.Errorf("bad chunk size byte %q", c)
				}
				d.size = d.size<<4 | int64(v)
				d.digits++
			}
			i++
		case chExt:
			if c == '\n' {
				d.endSizeLine()
			}
			i++
		case chSizeLF:
			if c != '\n' {
				return i, false, errors.New("chunk size line not ended by LF")
			}
			d.endSizeLine()
			i++
		case chData:
			n := int64(len(p) - i)
			n = min(n, d.size)
			sink.body(p[i : i+int(n)])
			d.size -= n
			i += int(n)
			if d.size == 0 {
				d.state = chDataCR
			}
		case chDataCR:
			switch c {
			case '\r':
				d.state = chDataLF
			case '\n':
				d.state = chSize
			default:
				return i, false, errors.New("chunk data not followed by CRLF")
			}
			i++
		case chDataLF:
			if c != '\n' {
				return i, false, errors.New("chunk data not followed by CRLF")
			}
			d.state = chSize
			i++
		case chTrailer: // at the start of a trailer line; an empty one ends the body
			switch c {
			case '\r':
				d.state = chTrailerLF
			case '\n':
				d.state = chDone
				return i + 1, true, nil
			default:
				d.state = chTrailerLine
			}
			i++
		case chTrailerLine:
			if c == '\n' {
				d.state = chTrailer
			}
			i++
		case chTrailerLF:
			if c != '\n' {
				return i, false, errors.New("trailer not ended by CRLF")
			}
			d.state = chDone
			return i + 1, true, nil
		case chDone:
			return i, true, nil
		}
	}
	return i, d.state == chDone, nil
}

func (d *chunkDecoder) endSizeLine() {
	if d.digits == 0 {
		d.state = chSize // tolerate an empty line before a size
		return
	}
	d.digits = 0
	if d.size == 0 {
		d.state = chTrailer
		return
	}
	d.state = chData
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

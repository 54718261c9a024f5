//go:build linux

package bench

import "fmt"

// respSink receives each complete response of a pipelined connection, in order.
// body holds at most the first bodySample bytes (enough for an error message).
type respSink interface {
	onResponse(status int, body []byte)
}

const bodySample = 512

// respReader parses a stream of pipelined HTTP/1.1 responses, keeping only a
// sample of each body.
type respReader struct {
	head   respHead
	inBody bool
	chunks chunkDecoder
	left   int64 // Content-Length left; -1 reads until the connection closes
	sample []byte
	Close  bool // the last response said Connection: close
}

func (r *respReader) body(p []byte) {
	if n := bodySample - len(r.sample); n > 0 {
		r.sample = append(r.sample, p[:min(n, len(p))]...)
	}
}

// feed parses p, calling sink for each response that completes.
func (r *respReader) feed(p []byte, sink respSink) error {
	for len(p) > 0 {
		if !r.inBody {
			n, done, err := r.head.feed(p)
			if err != nil {
				return err
			}
			p = p[n:]
			if !done {
				return nil
			}
			r.Close = r.head.Close
			r.sample = r.sample[:0]
			switch {
			case r.head.bodyless() || r.head.ContentLength == 0:
				sink.onResponse(r.head.Status, nil)
				continue
			case r.head.Chunked:
				r.chunks = chunkDecoder{}
			default:
				r.left = r.head.ContentLength
			}
			r.inBody = true
		}
		if r.head.Chunked {
			n, done, err := r.chunks.feed(p, r)
			if err != nil {
				return fmt.Errorf("chunked body: %w", err)
			}
			p = p[n:]
			if done {
				r.inBody = false
				sink.onResponse(r.head.Status, r.sample)
			}
			continue
		}
		if r.left < 0 {
			r.body(p)
			return nil
		}
		n := min(int64(len(p)), r.left)
		r.body(p[:n])
		r.left -= n
		p = p[n:]
		if r.left == 0 {
			r.inBody = false
			sink.onResponse(r.head.Status, r.sample)
		}
	}
	return nil
}

// eof ends a body that runs until the connection closes.
func (r *respReader) eof(sink respSink) {
	if r.inBody && !r.head.Chunked && r.left < 0 {
		r.inBody = false
		sink.onResponse(r.head.Status, r.sample)
	}
}

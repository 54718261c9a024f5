//go:build linux

package bench

import (
	"bytes"
	"strconv"
)

// Every published record carries pub (which publisher connection sent it),
// seq (that publisher's sequence, from 1) and ts (send time, unix ns).
// The receiver reads them without decoding the JSON.

var (
	keyPub = []byte(`"pub":`)
	keySeq = []byte(`"seq":`)
	keyTS  = []byte(`"ts":`)
)

// recordStamp extracts pub, seq and ts from an event's data; ok is false
// when seq or ts is missing (a message that is not one of ours). The fields
// sit at the end of every record (keys sorted: pub, seq, title, ts, then
// PocketBase's updated), so they are searched backwards from there.
func recordStamp(data []byte) (pub int, seq, ts int64, ok bool) {
	i := bytes.LastIndex(data, keyTS)
	if i < 0 {
		return 0, 0, 0, false
	}
	j := bytes.LastIndex(data[:i], keySeq)
	if j < 0 {
		return 0, 0, 0, false
	}
	ts, ok1 := numberAt(data[i+len(keyTS):])
	seq, ok2 := numberAt(data[j+len(keySeq):])
	if !ok1 || !ok2 {
		return 0, 0, 0, false
	}
	if k := bytes.LastIndex(data[:j], keyPub); k >= 0 {
		p, _ := numberAt(data[k+len(keyPub):])
		pub = int(p)
	}
	return pub, seq, ts, true
}

// numberAt reads the number p starts with; it may be quoted, and may be
// written as a float (PocketBase stores numbers as float64).
func numberAt(p []byte) (int64, bool) {
	for len(p) > 0 && (p[0] == ' ' || p[0] == '"') {
		p = p[1:]
	}
	var v int64
	n := 0
	for n < len(p) && p[n] >= '0' && p[n] <= '9' {
		v = v*10 + int64(p[n]-'0')
		n++
	}
	if n == 0 {
		return 0, false
	}
	if n < len(p) && (p[n] == '.' || p[n] == 'e' || p[n] == 'E') {
		end := n
		for end < len(p) && bytes.IndexByte([]byte("0123456789.eE+-"), p[end]) >= 0 {
			end++
		}
		f, err := strconv.ParseFloat(string(p[:end]), 64)
		if err != nil {
			return 0, false
		}
		return int64(f), true
	}
	return v, true
}

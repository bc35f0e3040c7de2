package mask

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// WebSocket masks the literals in the payload of every frame r carries (the
// server-to-client side of an upgraded WebSocket, RFC 6455) with a
// same-length fill, so every frame header stays valid and the stream never
// waits past the end of a frame. A compressed frame (RSV1, from
// permessage-deflate, which crewgate strips from the handshake) or a
// masked one (which servers must not send) cannot be read, so when there
// are literals to look for it ends the stream with an error wrapping
// ErrUninspectable. Frames are scanned one by one: a value
// split across the fragments of one message is not joined.
//
// No WebSocket library rewrites frames in flight, so the frame reader is
// written here; it only needs the header layout.
func (e *Engine) WebSocket(r io.Reader, c *Counts) io.Reader {
	if len(e.fill.dets) == 0 {
		return r
	}
	return &wsReader{src: r, s: textScanner{e: e.fill, c: c}, buf: make([]byte, readSize)}
}

type wsReader struct {
	src  io.Reader
	s    textScanner
	buf  []byte
	in   []byte // read, not yet processed
	out  []byte
	off  int
	err  error
	left uint64 // payload bytes left in the current frame
}

// maxWSHeader is the longest frame header: 2 + 8 (length) + 4 (key).
const maxWSHeader = 14

func (w *wsReader) Read(p []byte) (int, error) {
	for w.off == len(w.out) {
		if w.err != nil {
			return 0, w.err
		}
		w.out, w.off = w.out[:0], 0
		if len(w.in) > 0 {
			if err := w.process(false); err != nil {
				w.err = err
			}
			if len(w.out) > 0 || w.err != nil {
				continue
			}
		}
		n, err := w.src.Read(w.buf)
		w.in = append(w.in, w.buf[:n]...)
		if err != nil {
			if errors.Is(err, io.EOF) {
				w.process(true)
			}
			// Otherwise fail closed: a partial frame is not passed on.
			w.err = err
		}
	}
	n := copy(p, w.out[w.off:])
	w.off += n
	return n, nil
}

// process moves what it can of w.in to w.out. At eof a trailing partial
// header is passed on as it is: it carries no payload.
func (w *wsReader) process(eof bool) error {
	for len(w.in) > 0 {
		if w.left == 0 {
			h, ok, err := w.header()
			if err != nil {
				return err
			}
			if !ok {
				if eof {
					w.out = append(w.out, w.in...)
					w.in = nil
				}
				return nil
			}
			w.out = append(w.out, w.in[:h]...)
			w.in = w.in[h:]
			if w.left == 0 {
				continue
			}
		}
		k := int(min(uint64(len(w.in)), w.left))
		done := uint64(k) == w.left
		w.out = w.s.feed(w.out, w.in[:k], done)
		w.left -= uint64(k)
		w.in = w.in[k:]
	}
	return nil
}

// header parses the frame header at the start of w.in: its length, or ok
// false when it is not complete yet.
func (w *wsReader) header() (int, bool, error) {
	b := w.in
	if len(b) < 2 {
		return 0, false, nil
	}
	if b[0]&0x40 != 0 {
		return 0, false, fmt.Errorf("%w: a compressed WebSocket frame", ErrUninspectable)
	}
	n := 2
	l := uint64(b[1] & 0x7f)
	switch l {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		// RFC 6455 forbids it, and a lenient client would unmask what
		// crewgate cannot see.
		return 0, false, fmt.Errorf("%w: a masked WebSocket frame from the server", ErrUninspectable)
	}
	if len(b) < n {
		return 0, false, nil
	}
	switch l {
	case 126:
		l = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		l = binary.BigEndian.Uint64(b[2:10])
	}
	w.left = l
	return n, true, nil
}

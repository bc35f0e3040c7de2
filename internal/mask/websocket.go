package mask

import (
	"bytes"
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
// ErrUninspectable. The fragments of one message are scanned as one text,
// as the client joins them: where a fragment ends in what could still
// start a value, its last bytes, and the frames after them, wait for the
// next fragment (at most the literal window); control frames are scanned
// on their own.
//
// No WebSocket library rewrites frames in flight, so the frame reader is
// written here; it only needs the header layout.
func (e *Engine) WebSocket(r io.Reader, c *Counts) io.Reader {
	if len(e.fill.dets) == 0 {
		return r
	}
	return &wsReader{src: r, s: textScanner{e: e.fill, c: c}, cs: textScanner{e: e.fill, c: c}, buf: make([]byte, readSize)}
}

type wsReader struct {
	src  io.Reader
	s    textScanner // the data of the current message, across its fragments
	cs   textScanner // one control frame's payload
	buf  []byte
	in   []byte // read, not yet processed
	out  []byte
	off  int
	err  error
	left uint64 // payload bytes left in the current data frame
	fin  bool   // the current data frame ends its message

	// The scanner's output lags its input by what it holds; the frame
	// headers and control frames read meanwhile are queued at the data
	// offset they follow, and written when the output reaches it. The fill
	// keeps lengths, so output and input offsets agree.
	fed, emitted uint64
	queue        []wsInsert
}

type wsInsert struct {
	at uint64
	b  []byte
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
			h, l, ok, err := w.header()
			if err != nil {
				return err
			}
			if !ok {
				if eof {
					w.insert(bytes.Clone(w.in))
					w.in = nil
				}
				return nil
			}
			if op := w.in[0] & 0x0f; op >= 8 {
				// A control frame (at most 125 bytes) is taken whole.
				if uint64(len(w.in)-h) < l {
					return nil
				}
				f := append(bytes.Clone(w.in[:h]), w.cs.feed(nil, w.in[h:h+int(l)], true)...)
				w.in = w.in[h+int(l):]
				w.insert(f)
				continue
			}
			w.fin = w.in[0]&0x80 != 0
			w.insert(bytes.Clone(w.in[:h]))
			w.in, w.left = w.in[h:], l
			if w.left == 0 && w.fin {
				w.data(nil, true)
			}
			continue
		}
		k := int(min(uint64(len(w.in)), w.left))
		w.left -= uint64(k)
		w.data(w.in[:k], w.left == 0 && w.fin)
		w.in = w.in[k:]
	}
	return nil
}

// data feeds payload bytes of the current message (end: its last) and
// writes what is safe, with the queued frames in their places.
func (w *wsReader) data(p []byte, end bool) {
	w.fed += uint64(len(p))
	w.emit(w.s.feed(nil, p, end))
}

func (w *wsReader) insert(b []byte) {
	w.queue = append(w.queue, wsInsert{at: w.fed, b: b})
	w.emit(nil)
}

func (w *wsReader) emit(o []byte) {
	for {
		if len(w.queue) > 0 && w.queue[0].at == w.emitted {
			w.out = append(w.out, w.queue[0].b...)
			w.queue = w.queue[1:]
			continue
		}
		if len(o) == 0 {
			return
		}
		n := uint64(len(o))
		if len(w.queue) > 0 {
			n = min(n, w.queue[0].at-w.emitted)
		}
		w.out = append(w.out, o[:n]...)
		w.emitted += n
		o = o[n:]
	}
}

// header parses the frame header at the start of w.in: its length, or ok
// false when it is not complete yet.
func (w *wsReader) header() (n int, length uint64, ok bool, err error) {
	b := w.in
	if len(b) < 2 {
		return 0, 0, false, nil
	}
	if b[0]&0x40 != 0 {
		return 0, 0, false, fmt.Errorf("%w: a compressed WebSocket frame", ErrUninspectable)
	}
	if b[1]&0x80 != 0 {
		// RFC 6455 forbids it, and a lenient client would unmask what
		// crewgate cannot see.
		return 0, 0, false, fmt.Errorf("%w: a masked WebSocket frame from the server", ErrUninspectable)
	}
	n = 2
	length = uint64(b[1] & 0x7f)
	switch length {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if len(b) < n {
		return 0, 0, false, nil
	}
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		length = binary.BigEndian.Uint64(b[2:10])
	}
	if b[0]&0x0f >= 8 && length > 125 {
		return 0, 0, false, fmt.Errorf("%w: a control frame of %d bytes", ErrUninspectable, length)
	}
	return n, length, true, nil
}

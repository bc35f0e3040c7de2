package mask

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// readSize is how much is read from the body at a time.
const readSize = 32 << 10

// readBufs recycles read buffers: a proxy wraps every response, and a fresh
// 32 KiB buffer per body was most of the garbage per small response.
var readBufs = sync.Pool{New: func() any { b := make([]byte, readSize); return &b }}

var errClosed = errors.New("mask: read from a closed body")

// processor turns input chunks into output; eof flushes.
type processor interface {
	process(out, in []byte, eof bool) []byte
}

// Wrap returns body masked according to contentType and contentEncoding
// (the header values, possibly empty), and the Counts for it. The returned
// body closes the original. See the package documentation for the forms.
func (e *Engine) Wrap(body io.ReadCloser, contentType, contentEncoding string) (io.ReadCloser, *Counts) {
	form := formOf(contentType)
	encs, ok := encodings(contentEncoding)
	if form == "none" || !ok {
		return body, newCounts("none", false, false)
	}
	c := newCounts(form, true, len(encs) > 0)
	var p processor
	switch form {
	case "sse":
		p = newSSE(e, c)
	case "json":
		p = &jsonProc{e: e, c: c}
	default:
		p = &byteProc{s: textScanner{e: e, c: c, esc: form == "json-bytes"}}
	}
	bp := readBufs.Get().(*[]byte)
	return &reader{body: body, encs: encs, p: p, buf: *bp, bufp: bp}, c
}

// formOf maps a Content-Type to a body form.
func formOf(ct string) string {
	if strings.TrimSpace(ct) == "" {
		return "bytes"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	switch {
	case mt == "text/event-stream":
		return "sse"
	case mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json"):
		return "json"
	case mt == "application/x-ndjson" || mt == "application/ndjson" || mt == "application/jsonl" ||
		mt == "application/x-jsonlines" || mt == "application/json-seq":
		return "json-bytes"
	case strings.HasPrefix(mt, "text/"), mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		mt == "application/x-www-form-urlencoded", mt == "application/javascript",
		mt == "application/graphql", mt == "application/yaml", mt == "application/x-yaml":
		return "bytes"
	}
	return "none"
}

// encodings parses Content-Encoding; ok is false for an encoding crewgate cannot decode.
func encodings(ce string) ([]string, bool) {
	var out []string
	for _, f := range strings.Split(ce, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch f {
		case "", "identity":
		case "gzip", "x-gzip", "deflate", "br", "zstd":
			out = append(out, f)
		default:
			return nil, false
		}
	}
	return out, true
}

// reader pulls from the (decoded) body, runs the processor and serves its output.
type reader struct {
	body   io.ReadCloser
	encs   []string
	src    io.Reader
	closer []func() error
	p      processor
	buf    []byte
	bufp   *[]byte // buf's pool entry, returned on Close
	out    []byte
	off    int
	err    error
}

func (r *reader) open() error {
	var src io.Reader = r.body
	for k := len(r.encs) - 1; k >= 0; k-- {
		switch r.encs[k] {
		case "gzip", "x-gzip":
			z, err := gzip.NewReader(src)
			if err != nil {
				return fmt.Errorf("mask: gzip body: %w", err)
			}
			r.closer = append(r.closer, z.Close)
			src = z
		case "deflate":
			// RFC 9110 deflate is zlib; some servers send raw deflate.
			br := bufio.NewReader(src)
			if h, err := br.Peek(2); err == nil && (uint16(h[0])<<8|uint16(h[1]))%31 == 0 && h[0]&0x0f == 8 {
				z, err := zlib.NewReader(br)
				if err != nil {
					return fmt.Errorf("mask: deflate body: %w", err)
				}
				r.closer = append(r.closer, z.Close)
				src = z
			} else {
				z := flate.NewReader(br)
				r.closer = append(r.closer, z.Close)
				src = z
			}
		case "br":
			src = brotli.NewReader(src)
		case "zstd":
			z, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
				zstd.WithDecoderMaxWindow(32<<20))
			if err != nil {
				return fmt.Errorf("mask: zstd body: %w", err)
			}
			r.closer = append(r.closer, func() error { z.Close(); return nil })
			src = z
		}
	}
	r.src = src
	return nil
}

func (r *reader) Read(p []byte) (int, error) {
	for r.off == len(r.out) {
		if r.err != nil {
			return 0, r.err
		}
		if r.src == nil {
			if err := r.open(); err != nil {
				r.err = err
				return 0, err
			}
		}
		n, err := r.src.Read(r.buf)
		eof := errors.Is(err, io.EOF)
		if err != nil && !eof {
			// Fail closed: held text is dropped, not flushed unmasked.
			r.err = err
			n = 0
		}
		if n > 0 || eof {
			r.out = r.p.process(r.out[:0], r.buf[:n], eof)
			r.off = 0
		}
		if eof {
			r.err = io.EOF
		}
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

func (r *reader) Close() error {
	if r.bufp != nil {
		readBufs.Put(r.bufp)
		r.bufp, r.buf = nil, nil
		r.err, r.out, r.off = errClosed, nil, 0
	}
	var errs []error
	for _, c := range r.closer {
		errs = append(errs, c())
	}
	errs = append(errs, r.body.Close())
	return errors.Join(errs...)
}

// byteProc masks a body as one text stream.
type byteProc struct{ s textScanner }

func (b *byteProc) process(out, in []byte, eof bool) []byte { return b.s.feed(out, in, eof) }

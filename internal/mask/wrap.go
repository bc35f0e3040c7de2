package mask

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/crewgate/crewgate/internal/reqbody"
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

// ErrUninspectable is wrapped by Wrap's error for a body it cannot read as
// the client would: an encoding it cannot decode. Such a body must be
// refused, never passed through.
var ErrUninspectable = errors.New("the body cannot be inspected")

// Wrap returns body masked according to contentType and contentEncoding
// (the header values, possibly empty), and the Counts for it. The returned
// body closes the original. See the package documentation for the forms.
// An encoding it cannot decode is an error wrapping ErrUninspectable.
func (e *Engine) Wrap(body io.ReadCloser, contentType, contentEncoding string) (io.ReadCloser, *Counts, error) {
	return e.wrap(body, contentType, contentEncoding, -1)
}

// wrap is Wrap for a body of the given length (-1: unknown), which a JSON
// document of an uncompressed body reserves from the budget at once.
func (e *Engine) wrap(body io.ReadCloser, contentType, contentEncoding string, length int64) (io.ReadCloser, *Counts, error) {
	encs, err := reqbody.Encodings(contentEncoding)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUninspectable, err)
	}
	form := formOf(contentType)
	c := newCounts(form, true, len(encs) > 0)
	if form == "binary" && len(e.fill.dets) == 0 && len(encs) == 0 {
		return body, c, nil // nothing that could be in it: no copy
	}
	var p processor
	switch form {
	case "sse":
		p = &chain{a: newSSE(e, c), b: e.lit.literalPass(c, false)}
	case "json":
		j := &jsonProc{e: e, c: c, mem: reservation{b: e.budget}}
		if len(encs) == 0 && length > 0 {
			j.hint = int(min(length, int64(e.jsonMax)+1))
		}
		p = &chain{a: j, b: e.lit.literalPass(c, true)}
	case "binary":
		p = e.fill.literalPass(c, false)
	default:
		p = &byteProc{s: textScanner{e: e, c: c, esc: form == "json-bytes"}}
	}
	bp := readBufs.Get().(*[]byte)
	return &reader{body: body, encs: encs, p: p, buf: *bp, bufp: bp}, c, nil
}

// literalPass is a processor that masks e's literals only: the second pass
// over JSON and SSE output, which catches them where the first pass does
// not look (object keys, numbers, escaped forms), and the only pass over
// binary bodies.
func (e *Engine) literalPass(c *Counts, json bool) processor {
	if len(e.dets) == 0 {
		return nil
	}
	return &byteProc{s: textScanner{e: e, c: c, esc: json}}
}

// failer is a processor that can fail for good (jsonProc); releaser one
// that holds budget until the body is closed.
type (
	failer   interface{ failure() error }
	releaser interface{ release() }
)

func (c *chain) failure() error {
	if f, ok := c.a.(failer); ok {
		return f.failure()
	}
	return nil
}

func (c *chain) release() {
	if r, ok := c.a.(releaser); ok {
		r.release()
	}
}

// chain runs b over a's output; a nil b passes a's output on. A chain of
// split-invariant processors is split-invariant.
type chain struct {
	a, b processor
	mid  []byte
}

func (c *chain) process(out, in []byte, eof bool) []byte {
	if c.b == nil {
		return c.a.process(out, in, eof)
	}
	c.mid = c.a.process(c.mid[:0], in, eof)
	return c.b.process(out, c.mid, eof)
}

// formOf maps a Content-Type to a body form. Text forms get the detectors
// and the literals; "binary" gets the literals with a same-length fill.
func formOf(ct string) string {
	if strings.TrimSpace(ct) == "" {
		return "bytes"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.Split(ct, ";")[0]))
	}
	switch {
	case mt == "text/event-stream":
		return "sse"
	case mt == "application/json" || mt == "text/json" || mt == "application/x-json" || strings.HasSuffix(mt, "+json"):
		return "json"
	case mt == "application/x-ndjson" || mt == "application/ndjson" || mt == "application/jsonl" ||
		mt == "application/x-jsonlines" || mt == "application/json-seq":
		return "json-bytes"
	case strings.HasPrefix(mt, "text/"), mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		mt == "application/x-www-form-urlencoded", mt == "application/javascript",
		mt == "application/graphql", mt == "application/yaml", mt == "application/x-yaml",
		params["charset"] != "":
		return "bytes"
	}
	return "binary"
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

	// trailer, when set, is masked in place once the body has been read:
	// the transport fills it just before the body's EOF.
	trailer http.Header
	eng     *Engine
	counts  *Counts
}

func (r *reader) open() error {
	var src io.Reader = r.body
	for k := len(r.encs) - 1; k >= 0; k-- {
		dec, err := reqbody.NewDecoder(r.encs[k], src)
		if err != nil {
			return fmt.Errorf("mask: %w", err)
		}
		r.closer = append(r.closer, dec.Close)
		src = dec
	}
	r.src = src
	return nil
}

func (r *reader) Read(p []byte) (int, error) {
	for r.off == len(r.out) {
		if r.err != nil {
			return 0, r.err
		}
		r.step()
	}
	n := copy(p, r.out[r.off:])
	r.off += n
	return n, nil
}

// step reads once from the (decoded) body and runs the processor.
func (r *reader) step() {
	if r.src == nil {
		if err := r.open(); err != nil {
			r.err = err
			return
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
		if f, ok := r.p.(failer); ok && f.failure() != nil {
			r.err, r.out = f.failure(), nil
			return
		}
	}
	if eof {
		if r.trailer != nil {
			r.eng.MaskHeader(r.trailer, r.counts)
		}
		r.err = io.EOF
	}
}

// Preread reads body (one Wrap returned) until its masker has output: a
// JSON document until it is masked whole (whole: data is all of it) or the
// masker has switched to streaming it as bytes (data comes first, then the
// rest of body). data is the masker's own buffer, not a copy: a document
// is held once.
func Preread(body io.Reader) (data []byte, whole bool, err error) {
	r, ok := body.(*reader)
	if !ok {
		data, err = io.ReadAll(body)
		return data, err == nil, err
	}
	for r.off == len(r.out) && r.err == nil {
		r.step()
	}
	if r.err != nil && !errors.Is(r.err, io.EOF) {
		return nil, false, r.err
	}
	data = r.out[r.off:]
	r.out, r.off = nil, 0
	return data, errors.Is(r.err, io.EOF), nil
}

// Close closes the body and gives back the budget its masker held: the
// masked document stays accounted for until the crew has it.
func (r *reader) Close() error {
	if rl, ok := r.p.(releaser); ok {
		rl.release()
	}
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

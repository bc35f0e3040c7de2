package reqbody

import (
	"bufio"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// Encodings parses a Content-Encoding value into its codings, in the order
// they were applied; "identity" and empty entries are dropped. A coding
// crewgate cannot undo is an error wrapping ErrUninspectable.
func Encodings(header string) ([]string, error) {
	var out []string
	for f := range strings.SplitSeq(header, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch f {
		case "", "identity":
		case "gzip", "x-gzip", "deflate", "br", "zstd":
			out = append(out, f)
		default:
			return nil, uninspectable("unknown Content-Encoding %s", shown(f))
		}
	}
	return out, nil
}

// NewDecoder returns src with one content coding (as Encodings returns it)
// undone. Closing the result releases the decoder, not src. Request views
// and response masking both decode with it.
func NewDecoder(coding string, src io.Reader) (io.ReadCloser, error) {
	switch coding {
	case "gzip", "x-gzip":
		z, err := gzip.NewReader(src)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		return z, nil
	case "deflate":
		// RFC 9110 deflate is zlib; some peers send raw deflate.
		br, ok := src.(*bufio.Reader)
		if !ok {
			br = bufio.NewReader(src)
		}
		if h, err := br.Peek(2); err == nil && (uint16(h[0])<<8|uint16(h[1]))%31 == 0 && h[0]&0x0f == 8 {
			z, err := zlib.NewReader(br)
			if err != nil {
				return nil, fmt.Errorf("deflate body: %w", err)
			}
			return z, nil
		}
		return flate.NewReader(br), nil
	case "br":
		return io.NopCloser(brotli.NewReader(src)), nil
	case "zstd":
		z, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(32<<20))
		if err != nil {
			return nil, fmt.Errorf("zstd body: %w", err)
		}
		return z.IOReadCloser(), nil
	}
	return nil, fmt.Errorf("unknown content coding %q", coding)
}

// decodeContent undoes encs on raw, reading at most limit decoded bytes. On
// error the bytes decoded so far (at most limit) are returned with it.
func decodeContent(raw []byte, encs []string, limit int) ([]byte, error) {
	name := strings.Join(encs, ", ")
	var src io.Reader = bytes.NewReader(raw)
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for i := len(encs) - 1; i >= 0; i-- { // the last coding applied is undone first
		in := bufio.NewReader(src)
		dec, err := NewDecoder(encs[i], in)
		if err != nil {
			if c := errors.Unwrap(err); c != nil {
				err = c
			}
			return nil, uninspectable("%s body cannot be decoded: %v", name, err)
		}
		closers = append(closers, dec)
		src = &whole{dec: dec, in: in, coding: encs[i]}
	}
	hint := 4 * len(raw)
	if len(encs) == 1 && (encs[0] == "gzip" || encs[0] == "x-gzip") && len(raw) >= 18 {
		// A gzip trailer ends with the decoded size (mod 2^32): a hint, since
		// the crew writes it, and readAtMost never allocates past the limit.
		hint = int(binary.LittleEndian.Uint32(raw[len(raw)-4:]))
	}
	out, over, err := readAtMost(src, limit, hint)
	switch {
	case err != nil:
		return out[:min(len(out), limit)], uninspectable("%s body cannot be decoded: %v", name, err)
	case over:
		return out[:limit], uninspectable("%s body larger than %s after decoding", name, FormatSize(limit))
	}
	return out, nil
}

// whole is one decoding layer that fails when its encoded input goes on
// after the encoded stream ends. zlib and raw deflate stop reading at their
// end; bytes after it would reach an upstream that ignores Content-Encoding
// unread by any rule. (gzip, br and zstd reject such bytes themselves.)
type whole struct {
	dec    io.Reader
	in     *bufio.Reader
	coding string
}

func (w *whole) Read(p []byte) (int, error) {
	n, err := w.dec.Read(p)
	if err == io.EOF {
		switch _, e := w.in.ReadByte(); {
		case e == nil:
			return n, fmt.Errorf("data after the end of the %s stream", w.coding)
		case e != io.EOF:
			return n, e
		}
	}
	return n, err
}

// readAtMost reads r to its end, or to limit+1 bytes, reporting over when
// there were more than limit.
func readAtMost(r io.Reader, limit, hint int) ([]byte, bool, error) {
	return appendAtMost(make([]byte, 0, min(limit+1, max(hint+1, 32<<10))), r, limit)
}

// appendAtMost appends r to dst up to its end or limit+1 bytes, reporting
// over when there were more than limit. dst grows as the data comes, so a
// small body that claims a large size costs only what it holds, and a large
// one at most about twice the limit.
func appendAtMost(dst []byte, r io.Reader, limit int) (b []byte, over bool, err error) {
	lr := io.LimitReader(r, int64(limit)+1)
	b, base := dst, len(dst)
	for {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(max(cap(b), 512), base+limit+1-len(b)))
		}
		n, err := lr.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		switch {
		case err == io.EOF:
			return b, len(b)-base > limit, nil
		case err != nil:
			return b, false, err
		}
	}
}

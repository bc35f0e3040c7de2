package testenv

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/text/encoding/unicode"
)

// Compress encodes b with an HTTP content coding: gzip, deflate (zlib, as
// RFC 9110 says), raw-deflate (what some servers send as deflate), br or
// zstd (another name panics); tests build the bodies a crew or an upstream would send with it.
func Compress(coding string, b []byte) []byte {
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		w, _ = flate.NewWriter(&buf, flate.DefaultCompression)
	case "br":
		w = brotli.NewWriter(&buf)
	case "zstd":
		w, _ = zstd.NewWriter(&buf)
	default:
		panic("testenv.Compress: unknown coding " + coding)
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// UTF16 encodes s as UTF-16 in byte order e, with a byte order mark when
// bom is set.
func UTF16(s string, e unicode.Endianness, bom bool) []byte {
	p := unicode.IgnoreBOM
	if bom {
		p = unicode.UseBOM
	}
	b, _ := unicode.UTF16(e, p).NewEncoder().Bytes([]byte(s))
	return b
}

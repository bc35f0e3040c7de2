package mask

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func wsFrame(op byte, payload string) []byte {
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126, 0, 0)
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = append(b, 127, 0, 0, 0, 0, 0, 0, 0, 0)
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	return append(b, payload...)
}

func TestWebSocketFrames(t *testing.T) {
	e := mustEngine(t, Config{Literals: []Literal{{Value: injected}}})
	stream := bytes.Join([][]byte{
		wsFrame(1, "hello s"), // ends in a byte that could start the value
		wsFrame(1, "key "+injected+" end"),
		wsFrame(2, "\x00\x01"+injected[:5]),
		wsFrame(9, ""),
		wsFrame(1, strings.Repeat("x", 70000)+injected),
	}, nil)
	want := bytes.ReplaceAll(stream, []byte(injected), bytes.Repeat([]byte("*"), len(injected)))
	r := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		src := &chunkReader{data: stream, cuts: randomCuts(r, len(stream))}
		got, err := io.ReadAll(e.WebSocket(io.NopCloser(src), nil))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("err %v, output differs (%d vs %d bytes)", err, len(got), len(want))
		}
	}
	// A frame is passed on once it is complete, even when it ends in what
	// could start the value: frames are scanned whole.
	pr, pw := io.Pipe()
	ws := e.WebSocket(pr, nil)
	go pw.Write(wsFrame(1, "hello s"))
	buf := make([]byte, 64)
	n, err := io.ReadAtLeast(ws, buf, len(wsFrame(1, "hello s")))
	if err != nil || !bytes.Equal(buf[:n], wsFrame(1, "hello s")) {
		t.Errorf("first frame: %q, %v", buf[:n], err)
	}
	pw.Close()
}

func TestWebSocketFramesItCannotRead(t *testing.T) {
	e := mustEngine(t, Config{Literals: []Literal{{Value: injected}}})
	compressed := wsFrame(1, "x")
	compressed[0] |= 0x40
	masked := []byte{0x81, 0x81, 1, 2, 3, 4, 'x' ^ 1}
	for name, f := range map[string][]byte{"compressed": compressed, "masked": masked} {
		got, err := io.ReadAll(e.WebSocket(bytes.NewReader(append(wsFrame(1, "ok"), f...)), nil))
		if !errors.Is(err, ErrUninspectable) || !bytes.Equal(got, wsFrame(1, "ok")) {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
}

// TestWebSocketFragments: a value split across the fragments of one
// message, with a control frame between them, is joined as the client
// joins it; every frame keeps its header and length.
func TestWebSocketFragments(t *testing.T) {
	e := mustEngine(t, Config{Literals: []Literal{{Value: injected}}})
	frag := func(op byte, fin bool, p string) []byte {
		f := wsFrame(op, p)
		if !fin {
			f[0] &^= 0x80
		}
		return f
	}
	stars := func(n int) string { return strings.Repeat("*", n) }
	stream := bytes.Join([][]byte{
		frag(1, false, "key "+injected[:10]),
		frag(9, true, "ping"),
		frag(0, false, injected[10:15]),
		frag(0, true, injected[15:]+" end"),
		frag(1, true, "next"),
	}, nil)
	want := bytes.Join([][]byte{
		frag(1, false, "key "+stars(10)),
		frag(9, true, "ping"),
		frag(0, false, stars(5)),
		frag(0, true, stars(len(injected)-15)+" end"),
		frag(1, true, "next"),
	}, nil)
	r := rand.New(rand.NewPCG(5, 6))
	for range 50 {
		src := &chunkReader{data: stream, cuts: randomCuts(r, len(stream))}
		got, err := io.ReadAll(e.WebSocket(io.NopCloser(src), nil))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("err %v\n got  %q\n want %q", err, got, want)
		}
	}
}

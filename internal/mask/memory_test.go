package mask

import (
	"io"
	"runtime"
	"strings"
	"testing"
)

// genReader streams n bytes of text with secrets in it, without holding them.
type genReader struct {
	block []byte
	n     int64
	off   int
}

func newGen(n int64) *genReader {
	var b strings.Builder
	for b.Len() < 64<<10 {
		b.WriteString(`The model said: "Here is the summary you asked for." `)
		b.WriteString("contact " + email + " key " + awsKey + " card " + visa + ". ")
		b.WriteString(strings.Repeat("lorem ipsum dolor sit amet, consectetur adipiscing elit. ", 8))
	}
	return &genReader{block: []byte(b.String()), n: n}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.n <= 0 {
		return 0, io.EOF
	}
	k := copy(p, g.block[g.off:])
	if int64(k) > g.n {
		k = int(g.n)
	}
	g.off = (g.off + k) % len(g.block)
	g.n -= int64(k)
	return k, nil
}

func (g *genReader) Close() error { return nil }

// TestBoundedMemory streams a large body through the byte and SSE maskers
// and checks that the heap does not grow with the body. The full 1 GiB runs
// without -short and without the race detector; otherwise 64 MiB, which is
// still 8x the heap bound checked.
func TestBoundedMemory(t *testing.T) {
	size := int64(1 << 30)
	if testing.Short() || raceEnabled {
		size = 64 << 20
	}
	e := mustEngine(t, Config{})
	rc, c, _ := e.Wrap(newGen(size), "text/plain", "")
	buf := make([]byte, 32<<10)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	var read, next int64
	for {
		n, err := rc.Read(buf)
		read += int64(n)
		if read >= next {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			next += 16 << 20
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	growth := int64(peak) - int64(base)
	t.Logf("streamed %d MiB in, %d MiB out, heap growth %d KiB, %d matches", size>>20, read>>20, growth>>10, c.Total())
	if growth > 8<<20 {
		t.Errorf("heap grew by %d KiB while streaming %d MiB", growth>>10, size>>20)
	}
	if c.Total() < int(size/(64<<10)) {
		t.Errorf("only %d matches: the generator's secrets were not masked", c.Total())
	}
}

package ca

import (
	"strconv"
	"testing"
	"time"
)

func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		if _, err := New(testHosts, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeaf measures issuing a leaf for a host not yet cached, as on the
// first CONNECT to each host.
func BenchmarkLeaf(b *testing.B) {
	c := newTestCA(b)
	i := 0
	for b.Loop() {
		i++
		if _, err := c.Leaf("h" + strconv.Itoa(i) + ".example.test"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeafCached measures the lookup on every later CONNECT, from many
// goroutines at once.
func BenchmarkLeafCached(b *testing.B) {
	c := newTestCA(b)
	if _, err := c.Leaf("good.test"); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Leaf("good.test"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkTLSConfig is what the proxy pays per intercepted CONNECT once the
// leaf is cached.
func BenchmarkTLSConfig(b *testing.B) {
	c := newTestCA(b)
	if _, err := c.TLSConfig("good.test"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := c.TLSConfig("good.test"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteBundle is the bundle's share of the setup before the child
// starts, with this machine's system roots.
func BenchmarkWriteBundle(b *testing.B) {
	b.Setenv("TMPDIR", b.TempDir())
	c := newTestCA(b)
	for b.Loop() {
		bundle, err := WriteBundle(c, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := bundle.Remove(); err != nil {
			b.Fatal(err)
		}
	}
}

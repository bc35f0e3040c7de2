package keyring

import "testing"

// BenchmarkRoundTrip measures Set followed by Get against the real keyring.
func BenchmarkRoundTrip(b *testing.B) {
	for _, bc := range []struct {
		name string
		size int
	}{{"small", 64}, {"8KB", 8192}} {
		b.Run(bc.name, func(b *testing.B) {
			s := newRealStore(b, 0)
			v := randomValue(b, bc.size)
			for b.Loop() {
				if err := s.Set("bench", v); err != nil {
					b.Fatal(err)
				}
				if got, err := s.Get("bench"); err != nil || got != v {
					b.Fatalf("Get: %d bytes, %v", len(got), err)
				}
			}
		})
	}
}

package mask

import (
	"path/filepath"
	"testing"
)

// FuzzGitleaksSplit checks split invariance for the gitleaks rules: for
// random text and random cuts, the byte stream (plain and raw JSON) gives
// the one-shot output, and masking is idempotent.
func FuzzGitleaksSplit(f *testing.F) {
	e := mustEngine(f, Config{})
	for i, s := range glSeedsF(f) {
		f.Add(s, []byte{byte(i), 3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5})
	}
	f.Fuzz(func(t *testing.T, text string, seed []byte) {
		if len(text) > 4096 {
			return
		}
		checkStreams(t, e, text, cutsFrom(seed, len(text)))
	})
}

// glSeedsF returns gitleaks true positives, one per rule, and each joined
// with the one before, so that seeds also have a secret in mid-text.
func glSeedsF(f *testing.F) []string {
	var out []string
	seen := map[string]bool{}
	var prev string
	for _, p := range readJSONL[positive](f, filepath.Join("testdata", "detection", "gitleaks-tps.jsonl.gz")) {
		if seen[p.Rule] {
			continue
		}
		seen[p.Rule] = true
		out = append(out, p.Text)
		if prev != "" {
			out = append(out, prev+"\nand then "+p.Text+" ok")
		}
		prev = p.Text
	}
	return out
}

// TestGitleaksEverySplit cuts a true positive of every gitleaks rule at
// every position, once and in three pieces, and compares with one shot.
func TestGitleaksEverySplit(t *testing.T) {
	e := mustEngine(t, Config{})
	seen := map[string]bool{}
	for _, p := range readJSONL[positive](t, filepath.Join("testdata", "detection", "gitleaks-tps.jsonl.gz")) {
		if seen[p.Rule] {
			continue
		}
		seen[p.Rule] = true
		text := "see " + p.Text + " end"
		want := e.MaskString(text)
		wantJSON := must(streamMask(e, text, nil, true))
		// Under the race detector every third cut point: the same rules,
		// a third of the two minutes.
		step := 1
		if raceEnabled {
			step = 3
		}
		for c := 1; c < len(text); c += step {
			if got, _ := streamMask(e, text, []int{c}, false); got != want {
				t.Fatalf("%s cut at %d:\n got  %q\n want %q", p.Rule, c, got, want)
			}
			if d := c + (len(text)-c)/2; d > c && d < len(text) {
				if got, _ := streamMask(e, text, []int{c, d}, true); got != wantJSON {
					t.Fatalf("%s raw JSON cut at %d, %d:\n got  %q", p.Rule, c, d, got)
				}
			}
		}
	}
}

func must(s string, _ int) string { return s }

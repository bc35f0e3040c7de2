package mask

import "slices"

// keywordScan finds where the gitleaks rules of one engine can start: where
// one of their literal starts (keywords such as "token" or prefixes such as
// "ghp_") occurs, in any letter case. It replaces the engine's byte-pair
// prefix tables for those detectors: hundreds of case-insensitive keywords
// would stop the pair scan at most English bigrams, while here a pair of
// folded bytes costs one bit test and is then checked against the full
// starts, so the scan loop only sees positions where a start really occurs.
type keywordScan struct {
	// A start is looked for by its first three bytes, in the letter cases
	// its pattern allows (no folding): tri has the bit of their hash set
	// (of every third byte for a start of two bytes).
	tri     [1 << (triBits - 6)]uint64
	first   [1 << 16]uint16  // folded first pair -> 1 + index into byFirst
	byFirst [][]int          // starts by folded first pair, longest first
	one     [256]bool        // first bytes of starts, every case
	starts  []string         // lower case
	dets    [][]*detector    // per start: the detectors to try where it is the longest start found
	cut     [][]*detector    // per byFirst slot: the detectors of all its starts, for a start cut by the end
	cut1    [256][]*detector // per first byte: the same, when one byte is left
	long    int              // longest start
}

const triBits = 18

// triHash maps three bytes, packed in the low 24 bits of w, to a bit of tri.
func triHash(w uint32) uint32 { return (w & 0xffffff) * 0x9e3779b1 >> (32 - triBits) }

var foldTab = func() (t [256]byte) {
	for c := range 256 {
		t[c] = lower(byte(c))
	}
	return t
}()

// newKeywordScan takes over the triggering of the detectors in dets that
// have keyword starts: it clears their prefixes so that the prefix tables
// never see them. It returns nil when there are none.
func newKeywordScan(dets []*detector) *keywordScan {
	k := &keywordScan{}
	own := map[string][]*detector{}
	for _, d := range dets {
		if len(d.kw) == 0 {
			continue
		}
		for _, s := range d.kw {
			if !slices.Contains(own[s], d) {
				own[s] = append(own[s], d)
			}
		}
		// The prefixes are the starts' first bytes in every allowed case.
		for _, v := range d.prefixes {
			k.one[v[0]] = true
			w := uint32(v[0])<<16 | uint32(v[1])<<8
			if len(v) == 2 {
				for c := range uint32(256) {
					h := triHash(w | c)
					k.tri[h>>6] |= 1 << (h & 63)
				}
			} else {
				h := triHash(w | uint32(v[2]))
				k.tri[h>>6] |= 1 << (h & 63)
			}
		}
		d.prefixes = nil
	}
	if len(own) == 0 {
		return nil
	}
	for s := range own {
		k.starts = append(k.starts, s)
	}
	// Longest first, so that the first full match in a list is the longest.
	slices.SortFunc(k.starts, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		if a < b {
			return -1
		}
		return 1
	})
	k.dets = make([][]*detector, len(k.starts))
	for i, s := range k.starts {
		k.long = max(k.long, len(s))
		f := uint(s[0])<<8 | uint(s[1])
		if k.first[f] == 0 {
			k.byFirst = append(k.byFirst, nil)
			k.first[f] = uint16(len(k.byFirst))
		}
		k.byFirst[k.first[f]-1] = append(k.byFirst[k.first[f]-1], i)
		// Every start that is a prefix of s matches wherever s does.
		var ds []*detector
		for _, t := range k.starts {
			if len(t) <= len(s) && s[:len(t)] == t {
				for _, d := range own[t] {
					if !slices.Contains(ds, d) {
						ds = append(ds, d)
					}
				}
			}
		}
		slices.SortFunc(ds, func(a, b *detector) int { return a.prio - b.prio })
		k.dets[i] = ds
	}
	union := func(l []*detector, ds []*detector) []*detector {
		for _, d := range ds {
			if !slices.Contains(l, d) {
				l = append(l, d)
			}
		}
		slices.SortFunc(l, func(a, b *detector) int { return a.prio - b.prio })
		return l
	}
	k.cut = make([][]*detector, len(k.byFirst))
	for j, ss := range k.byFirst {
		for _, s := range ss {
			k.cut[j] = union(k.cut[j], own[k.starts[s]])
		}
	}
	for _, t := range k.starts {
		for c := range 256 {
			if foldTab[c] == t[0] {
				k.cut1[c] = union(k.cut1[c], own[t])
			}
		}
	}
	return k
}

// next returns the first position at or after i where a start occurs, or,
// before eof, where the text ends inside what could still be one; len(b)
// when there is none.
func (k *keywordScan) next(b []byte, i int, eof bool) int {
	t := &k.tri
	for {
		for ; i+5 < len(b); i += 4 {
			w0 := uint32(b[i])<<16 | uint32(b[i+1])<<8 | uint32(b[i+2])
			w1 := w0<<8 | uint32(b[i+3])
			w2 := w1<<8 | uint32(b[i+4])
			w3 := w2<<8 | uint32(b[i+5])
			h0, h1, h2, h3 := triHash(w0), triHash(w1), triHash(w2), triHash(w3)
			if (t[h0>>6]>>(h0&63)|t[h1>>6]>>(h1&63)|t[h2>>6]>>(h2&63)|t[h3>>6]>>(h3&63))&1 != 0 {
				break
			}
		}
		if i+2 < len(b) {
			w := uint32(b[i])<<8 | uint32(b[i+1])
			for ; i+2 < len(b); i++ {
				w = w<<8 | uint32(b[i+2])
				h := triHash(w)
				if t[h>>6]>>(h&63)&1 != 0 {
					break
				}
			}
		}
		if i+2 >= len(b) {
			// The last two bytes: a start of two, or one cut by the end.
			for ; i < len(b); i++ {
				if k.longest(b, i) >= 0 || !eof && k.partial(b, i) {
					return i
				}
			}
			return len(b)
		}
		if k.longest(b, i) >= 0 || !eof && len(b)-i < k.long && k.partial(b, i) {
			return i
		}
		i++
	}
}

// at returns the detectors to try at i, a position next returned.
func (k *keywordScan) at(b []byte, i int) []*detector {
	if s := k.longest(b, i); s >= 0 {
		return k.dets[s]
	}
	// The text ends inside a start: the detectors of every start it could
	// become decide (and hold) for themselves.
	if len(b)-i == 1 {
		return k.cut1[b[i]]
	}
	if sl := k.first[uint16(foldTab[b[i]])<<8|uint16(foldTab[b[i+1]])]; sl > 0 {
		return k.cut[sl-1]
	}
	return nil
}

// longest returns the index of the longest start that occurs whole at i, or -1.
func (k *keywordScan) longest(b []byte, i int) int {
	if len(b)-i < 2 {
		return -1
	}
	sl := k.first[uint16(foldTab[b[i]])<<8|uint16(foldTab[b[i+1]])]
	if sl == 0 {
		return -1
	}
	for _, s := range k.byFirst[sl-1] {
		t := k.starts[s]
		if len(b)-i >= len(t) && hasFoldPrefix(t, b[i:i+len(t)]) {
			return s
		}
	}
	return -1
}

// partial reports whether b[i:] is a proper prefix of a start.
func (k *keywordScan) partial(b []byte, i int) bool {
	if len(b)-i == 1 {
		return k.one[foldTab[b[i]]]
	}
	sl := k.first[uint16(foldTab[b[i]])<<8|uint16(foldTab[b[i+1]])]
	if sl == 0 {
		return false
	}
	for _, s := range k.byFirst[sl-1] {
		if t := k.starts[s]; len(b)-i < len(t) && hasFoldPrefix(t, b[i:]) {
			return true
		}
	}
	return false
}

// hasFoldPrefix reports whether the lower-case form of p is a prefix of t.
func hasFoldPrefix(t string, p []byte) bool {
	if len(p) > len(t) {
		return false
	}
	for j, c := range p {
		if foldTab[c] != t[j] {
			return false
		}
	}
	return true
}

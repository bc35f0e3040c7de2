package keyring

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// headerMagic starts every header item. A value that itself starts with it is
// always stored chunked, so an item starting with it is always a header.
const headerMagic = "crewgate-chunked:v1:"

// maxChunks bounds the chunks of one value (2 MiB at the default chunk size)
// and the work a damaged header can cause.
const maxChunks = 1024

var errTooLarge = errors.New("value too large")

// header describes a chunked value: chunks <account>#<slot>0 .. #<slot><n-1>
// hold size bytes whose SHA-256 is sum.
type header struct {
	slot byte // 'a' or 'b'
	n    int
	size int
	sum  [sha256.Size]byte
}

func (h header) String() string {
	return fmt.Sprintf("%s%c:%d:%d:%s", headerMagic, h.slot, h.n, h.size, hex.EncodeToString(h.sum[:]))
}

// parseHeader reports whether item is a header, and an errCorrupt error when
// it is one but malformed.
func parseHeader(item string) (header, bool, error) {
	rest, ok := strings.CutPrefix(item, headerMagic)
	if !ok {
		return header{}, false, nil
	}
	bad := fmt.Errorf("%w: malformed chunk header", errCorrupt)
	f := strings.Split(rest, ":")
	if len(f) != 4 || len(f[0]) != 1 || (f[0][0] != 'a' && f[0][0] != 'b') {
		return header{}, true, bad
	}
	h := header{slot: f[0][0]}
	var err error
	if h.n, err = strconv.Atoi(f[1]); err != nil || h.n < 1 || h.n > maxChunks {
		return header{}, true, bad
	}
	if h.size, err = strconv.Atoi(f[2]); err != nil || h.size < 0 {
		return header{}, true, bad
	}
	sum, err := hex.DecodeString(f[3])
	if err != nil || len(sum) != sha256.Size {
		return header{}, true, bad
	}
	copy(h.sum[:], sum)
	return h, true, nil
}

func chunkName(account string, slot byte, i int) string {
	return account + "#" + string(slot) + strconv.Itoa(i)
}

func otherSlot(slot byte) byte {
	if slot == 'a' {
		return 'b'
	}
	return 'a'
}

// getValue reads account, following a header to its chunks. A concurrent
// writer may switch slots and delete the chunks being read (which shows as a
// missing chunk, or as a D-Bus error when an item vanishes between go-keyring's
// search and its read); the read is then retried while the header keeps
// changing.
func (o *op) getValue(account string) (string, error) {
	prev := ""
	for attempt := 0; ; attempt++ {
		item, err := o.get(account)
		if err != nil {
			return "", err
		}
		h, ok, err := parseHeader(item)
		if !ok {
			return item, nil
		}
		if err != nil {
			return "", err
		}
		v, err := o.readChunks(account, h)
		if err == nil || errors.Is(err, errDeadline) || item == prev || attempt == 3 {
			return v, err
		}
		prev = item
	}
}

func (o *op) readChunks(account string, h header) (string, error) {
	var b strings.Builder
	b.Grow(h.size)
	for i := range h.n {
		c, err := o.get(chunkName(account, h.slot, i))
		if errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("%w: chunk %d of %d is missing", errCorrupt, i+1, h.n)
		}
		if err != nil {
			return "", err
		}
		if b.Len()+len(c) > h.size {
			return "", fmt.Errorf("%w: chunks longer than the header says", errCorrupt)
		}
		b.WriteString(c)
	}
	v := b.String()
	sum := sha256.Sum256([]byte(v))
	if len(v) != h.size || subtle.ConstantTimeCompare(sum[:], h.sum[:]) != 1 {
		return "", fmt.Errorf("%w: chunks do not match the header's length and checksum", errCorrupt)
	}
	return v, nil
}

func (o *op) setValue(account, value string) error {
	var old *header
	item, err := o.get(account)
	switch {
	case err == nil:
		// A malformed header is simply replaced; its chunks are unknown and
		// get cleaned by probing below.
		if h, ok, herr := parseHeader(item); ok && herr == nil {
			old = &h
		}
	case !errors.Is(err, ErrNotFound):
		return err
	}

	chunk := o.s.chunk
	if len(value) <= chunk && !strings.HasPrefix(value, headerMagic) {
		if err := o.set(account, value); err != nil {
			return err
		}
		if old != nil {
			return o.purge(account, old.slot, 0, old.n)
		}
		return nil
	}

	n := (len(value) + chunk - 1) / chunk
	if n > maxChunks {
		return fmt.Errorf("%w: %d bytes, at most %d", errTooLarge, len(value), maxChunks*chunk)
	}
	h := header{slot: 'a', n: n, size: len(value), sum: sha256.Sum256([]byte(value))}
	if old != nil {
		h.slot = otherSlot(old.slot)
	}
	for i := range n {
		if err := o.set(chunkName(account, h.slot, i), value[i*chunk:min((i+1)*chunk, len(value))]); err != nil {
			return err
		}
	}
	// The switch: until this write the previous value stays readable.
	if err := o.set(account, h.String()); err != nil {
		return err
	}
	if err := o.purge(account, h.slot, n, n); err != nil { // leftovers of an older, longer write
		return err
	}
	known := 0
	if old != nil {
		known = old.n
	}
	return o.purge(account, otherSlot(h.slot), 0, known)
}

func (o *op) deleteValue(account string) error {
	known := map[byte]int{'a': 0, 'b': 0}
	item, err := o.get(account)
	found := err == nil
	if found {
		if h, ok, herr := parseHeader(item); ok && herr == nil {
			known[h.slot] = h.n
		}
		if err := o.del(account); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	// Also when the account is absent: this removes chunks orphaned by an
	// interrupted write.
	for _, slot := range []byte{'a', 'b'} {
		if err := o.purge(account, slot, 0, known[slot]); err != nil {
			return err
		}
	}
	if !found {
		return ErrNotFound
	}
	return nil
}

// purge deletes the chunks of slot from index keep on. Chunks below known
// are assumed to exist; beyond it the slot is probed. Deleting runs from the
// highest index down so that an interrupted purge leaves a prefix that the
// next probe finds again.
func (o *op) purge(account string, slot byte, keep, known int) error {
	end := max(keep, known)
	for ; end < keep+maxChunks; end++ {
		_, err := o.get(chunkName(account, slot, end))
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return err
		}
	}
	for i := end - 1; i >= keep; i-- {
		if err := o.del(chunkName(account, slot, i)); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

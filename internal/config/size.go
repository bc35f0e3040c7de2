package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Size is a number of bytes, written in the config as a whole number with
// an optional unit: "8MiB", "512 KiB", "1048576", "10MB". KiB, MiB and GiB
// are powers of 1024; KB, MB and GB powers of 1000; B is bytes.
type Size int64

var sizeRE = regexp.MustCompile(`^([0-9]+)\s*([KMG]i?B|kB|B)?$`)

var sizeUnits = map[string]Size{
	"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9,
}

// ParseSize reads a Size as the config writes it.
func ParseSize(s string) (Size, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size like 8MiB, 512KiB or 1048576", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	unit := sizeUnits[m[2]]
	if err != nil || n > (1<<62)/int64(unit) {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Size(n) * unit, nil
}

// String writes s the way ParseSize reads it, in the largest binary unit
// that divides it: "8MiB", "1500B".
func (s Size) String() string {
	for _, u := range []string{"GiB", "MiB", "KiB"} {
		if f := sizeUnits[u]; s != 0 && s%f == 0 {
			return strconv.FormatInt(int64(s/f), 10) + u
		}
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

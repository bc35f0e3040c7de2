package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cast"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment variable that sets a config key.
const EnvPrefix = "CREWGATE"

// Options say where Load looks.
type Options struct {
	// File is --config; "" means CREWGATE_CONFIG, then the default path.
	File string
	// Flags maps config keys ("issuer", "approval.timeout", "profile",
	// "log_level") to the flags that set them. Only flags the user changed
	// take effect.
	Flags map[string]*pflag.Flag
}

// Load reads the config file (absent is fine unless it was named
// explicitly), then applies CREWGATE_* variables and flags, and validates.
func Load(opts Options) (*Config, error) {
	cfg := Defaults()
	cfg.Profile, cfg.LogLevel = "default", "info"
	cfg.lines = map[string]int{}

	v := viper.New()
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	for key, flag := range opts.Flags {
		if err := v.BindPFlag(key, flag); err != nil {
			return nil, fmt.Errorf("binding flag --%s: %w", flag.Name, err)
		}
	}
	must(v.BindEnv("config", EnvVar("config")))

	path, explicit := opts.File, opts.File != ""
	if !explicit {
		if p := v.GetString("config"); p != "" {
			path, explicit = p, true
		} else {
			path = DefaultFile()
		}
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		cfg.File = path
		if err := decodeFile(path, data, &cfg); err != nil {
			return nil, err
		}
	case errors.Is(err, fs.ErrNotExist) && !explicit:
	default:
		return nil, &Error{Key: "config", Source: path, Msg: fmt.Sprintf("cannot read the config file: %v", unwrapPath(err))}
	}

	if err := applyOverrides(v, opts.Flags, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.validateGlobals(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// EnvVar names the environment variable for a config key.
func EnvVar(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key))
}

func (c *Config) validateGlobals() error {
	if !nameRE.MatchString(c.Profile) {
		return &Error{Key: "profile", Msg: fmt.Sprintf("%q must be lower-case letters, digits, '_', '-' or '.'", c.Profile)}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
		return nil
	}
	return &Error{Key: "log-level", Msg: fmt.Sprintf("%q is not one of debug, info, warn, error", c.LogLevel)}
}

// decodeFile walks the YAML tree against the Config schema so that every
// error can name file:line and the dotted key.
func decodeFile(path string, data []byte, cfg *Config) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlErr(err)
		return &Error{File: path, Line: line, Key: "(file)", Msg: msg}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	d := &decoder{file: path, lines: cfg.lines}
	return d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
}

// yamlErr splits a yaml.v3 syntax error ("yaml: line 3: ...") into its line
// and message.
func yamlErr(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		_, msg, _ = strings.Cut(msg, ": ")
	}
	return line, msg
}

type decoder struct {
	file  string
	lines map[string]int
}

func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) error {
	if key == "" {
		key = "(top level)"
	}
	return &Error{File: d.file, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

func (d *decoder) decode(n *yaml.Node, v reflect.Value, key string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if key != "" {
		d.lines[key] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		v.SetZero()
		return nil
	}
	switch {
	case v.Type() == durationType:
		if n.Kind != yaml.ScalarNode {
			return d.errorf(n, key, "expected a duration like 120s")
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			return d.errorf(n, key, "%q is not a duration like 120s or 2m", n.Value)
		}
		v.SetInt(int64(dur))
		return nil
	case v.Type() == sizeType:
		if n.Kind != yaml.ScalarNode {
			return d.errorf(n, key, "expected a size like 8MiB")
		}
		size, err := ParseSize(n.Value)
		if err != nil {
			return d.errorf(n, key, "%v", err)
		}
		v.SetInt(int64(size))
		return nil
	case v.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return d.errorf(n, key, "expected a mapping of keys, got %s", describe(n))
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			name := kn.Value
			child := join(key, name)
			f, ok := fieldByTag(v, name)
			if !ok {
				msg := "unknown key"
				if s := suggest(name, tagsOf(v.Type())); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				return d.errorf(kn, child, "%s", msg)
			}
			if seen[name] {
				return d.errorf(kn, child, "key is set twice")
			}
			seen[name] = true
			if err := d.decode(vn, f, child); err != nil {
				return err
			}
		}
		return nil
	case v.Kind() == reflect.Slice:
		items := n.Content
		switch n.Kind {
		case yaml.SequenceNode:
		case yaml.ScalarNode:
			if v.Type().Elem().Kind() != reflect.String {
				return d.errorf(n, key, "expected a list, got %s", describe(n))
			}
			items = []*yaml.Node{n} // "detectors: default" is a one-item list
		default:
			return d.errorf(n, key, "expected a list, got %s", describe(n))
		}
		s := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, item := range items {
			if err := d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case v.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			return d.errorf(n, key, "expected a mapping, got %s", describe(n))
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := d.decode(vn, elem, join(key, kn.Value)); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(kn.Value), elem)
		}
		v.Set(m)
		return nil
	case v.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			return d.errorf(n, key, "expected a string, got %s", describe(n))
		}
		v.SetString(n.Value)
		return nil
	case v.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			return d.errorf(n, key, "expected true or false, got %s", describe(n))
		}
		v.SetBool(b)
		return nil
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.Decode(&i) != nil {
			return d.errorf(n, key, "expected a whole number, got %s", describe(n))
		}
		v.SetInt(i)
		return nil
	}
	return d.errorf(n, key, "unsupported value")
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func join(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if tag := yamlTag(t.Field(i)); tag != "" && tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func yamlTag(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "-" || !f.IsExported() {
		return ""
	}
	return tag
}

func tagsOf(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if tag := yamlTag(t.Field(i)); tag != "" {
			out = append(out, tag)
		}
	}
	return out
}

// suggest returns the known key closest to name, if it is close enough to be
// a typo.
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(name, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// leaf is a config key that an environment variable or flag can set.
type leaf struct {
	key string
	v   reflect.Value
}

// leaves lists the scalar, list and duration keys reachable without going
// through a list (upstreams and rules are file-only).
func leaves(v reflect.Value, prefix string) []leaf {
	var out []leaf
	t := v.Type()
	for i := range t.NumField() {
		tag := yamlTag(t.Field(i))
		if tag == "" {
			continue
		}
		f, key := v.Field(i), join(prefix, tag)
		switch {
		case f.Type() == durationType, f.Type() == sizeType, f.Kind() == reflect.String, f.Kind() == reflect.Bool:
			out = append(out, leaf{key, f})
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			out = append(out, leaf{key, f})
		case f.Kind() == reflect.Struct:
			out = append(out, leaves(f, key)...)
		}
	}
	return out
}

// applyOverrides lets viper resolve env and flag values, flags first, and
// writes each one that is set into cfg.
func applyOverrides(v *viper.Viper, flags map[string]*pflag.Flag, cfg *Config) error {
	ls := leaves(reflect.ValueOf(cfg).Elem(), "")
	ls = append(ls, leaf{"profile", reflect.ValueOf(&cfg.Profile).Elem()}, leaf{"log_level", reflect.ValueOf(&cfg.LogLevel).Elem()})
	for _, l := range ls {
		must(v.BindEnv(l.key, EnvVar(l.key)))
		if !v.IsSet(l.key) {
			continue
		}
		source := EnvVar(l.key)
		if f, ok := flags[l.key]; ok && f.Changed {
			source = "--" + f.Name
		}
		if err := setValue(l.v, v.Get(l.key)); err != nil {
			return &Error{Key: l.key, Source: source, Msg: err.Error()}
		}
		delete(cfg.lines, l.key) // the value no longer comes from the file
	}
	return nil
}

func setValue(v reflect.Value, raw any) error {
	switch {
	case v.Type() == durationType:
		s := cast.ToString(raw)
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 120s or 2m", s)
		}
		v.SetInt(int64(d))
	case v.Type() == sizeType:
		size, err := ParseSize(cast.ToString(raw))
		if err != nil {
			return err
		}
		v.SetInt(int64(size))
	case v.Kind() == reflect.String:
		v.SetString(cast.ToString(raw))
	case v.Kind() == reflect.Bool:
		b, err := cast.ToBoolE(raw)
		if err != nil {
			return fmt.Errorf("%q is not true or false", cast.ToString(raw))
		}
		v.SetBool(b)
	case v.Kind() == reflect.Slice:
		var items []string
		if s, ok := raw.(string); ok {
			// Environment: comma- or space-separated.
			items = strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
		} else {
			items = cast.ToStringSlice(raw)
		}
		v.Set(reflect.ValueOf(slices.Clone(items)))
	}
	return nil
}

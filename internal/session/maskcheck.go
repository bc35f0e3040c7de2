package session

import (
	"fmt"
	"slices"
	"strings"

	"github.com/crewgate/crewgate/internal/config"
	"github.com/crewgate/crewgate/internal/mask"
)

// CheckMasks builds every masking engine a run builds from cfg (the
// config's own set, and each upstream's response and request sets) and
// returns the first problem as a *config.Error at the key to change, with
// the file and line when the key came from the file: an unknown detector, a
// replacement template that does not execute, a custom pattern that matches
// the empty string, a name used twice, a replacement some detector would
// mask again. `policy check` calls it so that these fail there, not first
// at `run`.
func CheckMasks(cfg *config.Config) error {
	m := cfg.Mask
	none := []string{"none"}
	// Each part on its own first, so that an error names the key at fault.
	if _, err := mask.New(mask.Config{Detectors: none, Replacement: m.Replacement}); err != nil {
		return maskError(cfg, "mask.replacement", err)
	}
	for i, f := range m.JSONFields {
		if _, err := mask.New(mask.Config{Detectors: none, JSONFields: []string{f}, Replacement: m.Replacement}); err != nil {
			return maskError(cfg, fmt.Sprintf("mask.json_fields[%d]", i), err)
		}
	}
	for i, c := range m.Custom {
		if _, err := mask.New(mask.Config{Detectors: none, Custom: []mask.Custom{{Name: c.Name, Pattern: c.Pattern}}, Replacement: m.Replacement}); err != nil {
			return maskError(cfg, fmt.Sprintf("mask.custom[%d].pattern", i), err)
		}
	}
	// Where each set's detector list is written, and the list.
	type set struct {
		key       string
		detectors []string
	}
	sets := []set{{"mask.detectors", nil}}
	for i, u := range cfg.Upstreams {
		sets = append(sets, set{fmt.Sprintf("upstreams[%d].mask.response", i), u.Mask.Response})
		if len(u.Mask.Request) > 0 {
			sets = append(sets, set{fmt.Sprintf("upstreams[%d].mask.request", i), u.Mask.Request})
		}
	}
	for _, s := range sets {
		if err := checkSet(cfg, s.key, s.detectors); err != nil {
			return err
		}
	}
	return nil
}

// checkSet builds one set as run does, and when it fails, finds the part
// that makes it fail: the detector list, the replacement with the
// detectors, or the first custom detector that brings the failure in.
func checkSet(cfg *config.Config, key string, detectors []string) error {
	mc := MaskConfig(cfg, detectors)
	_, err := mask.New(mc)
	if err == nil {
		return nil
	}
	if len(detectors) == 0 {
		key = "mask.detectors"
	}
	base, derr := mask.New(mask.Config{Detectors: mc.Detectors})
	if derr != nil {
		return maskError(cfg, key, derr)
	}
	if _, rerr := mask.New(mask.Config{Detectors: mc.Detectors, Replacement: mc.Replacement, JSONFields: mc.JSONFields}); rerr != nil {
		return maskError(cfg, "mask.replacement", rerr)
	}
	names := base.Detectors()
	for k, c := range mc.Custom {
		trial := mc
		trial.Custom = mc.Custom[:k+1]
		if _, cerr := mask.New(trial); cerr != nil {
			sub := ".pattern"
			if slices.Contains(names, c.Name) {
				sub = ".name"
			}
			return maskError(cfg, fmt.Sprintf("mask.custom[%d]%s", k, sub), cerr)
		}
		names = append(names, c.Name)
	}
	return maskError(cfg, key, err)
}

// maskError puts a masking error at key.
func maskError(cfg *config.Config, key string, err error) error {
	e := &config.Error{Key: key, Msg: strings.TrimPrefix(err.Error(), "mask: ")}
	if line := cfg.Line(key); line > 0 {
		e.File, e.Line = cfg.File, line
	}
	return e
}

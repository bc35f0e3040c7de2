//go:build !linux

package runner

// Undumpable has nothing to do here: there is no /proc to read another
// process's memory through, and same-user debugger attachment is governed
// by the system (macOS needs a debugger entitlement). See docs/threat-model.md.
func Undumpable() error { return nil }

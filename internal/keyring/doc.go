// Package keyring keeps crewgate's secrets (the refresh token, static
// upstream secrets) in the OS keyring, and only when the user asks for it
// with --insecure-storage, in a plaintext file.
//
// It wraps github.com/zalando/go-keyring and adds what that library lacks:
//
//   - A timeout on every call. go-keyring takes no context and can block for
//     minutes (D-Bus activation of a Secret Service that never starts, an
//     unlock prompt nobody answers). Each backend call runs in its own
//     goroutine; when the timeout fires the Store returns ErrTimeout and that
//     goroutine is left behind until go-keyring returns on its own (at the
//     latest when the D-Bus activation timeout expires, or when the process
//     exits). A leaked call may still complete its write afterwards, which is
//     why a timed-out Set must be treated as "unknown", not as "not written".
//   - Fail-fast on Linux when there is no session bus, instead of letting
//     godbus autolaunch a dbus-daemon and a gnome-keyring-daemon that outlive
//     the process.
//   - Transparent chunking, so values larger than the platform limits
//     (2560 bytes on Windows, about 3 KB on macOS) still round-trip.
//   - Errors that say what to do: every error except ErrNotFound is an
//     *Error whose Hint tells the user how to fix it. No error message ever
//     contains a stored value.
//
// # Item naming
//
// All items live under one service (default "crewgate"); the account is the
// caller's name, e.g. "default/refresh_token". A value of at most ChunkSize
// bytes is stored as is under the account, so
//
//	secret-tool lookup service crewgate username default/refresh_token
//
// prints it. A larger value (or one that happens to start with the header
// magic) is stored as a header under the account plus chunk items:
//
//	<account>           crewgate-chunked:v1:<slot>:<n>:<len>:<sha256 hex>
//	<account>#<slot>0   bytes [0, ChunkSize)
//	<account>#<slot>1   bytes [ChunkSize, 2*ChunkSize)
//	...                 up to <account>#<slot><n-1>
//
// where <slot> is "a" or "b". Set writes the new chunks into the slot the
// current header does not use, then switches the header (one item write), then
// deletes the old slot. A crash or timeout part way through therefore leaves
// the previous value readable; a header whose chunks are missing or do not
// match the length and SHA-256 is reported as an error, never returned as a
// wrong value. Chunks of a slot always form a prefix 0..k-1 (written in
// increasing order, deleted in decreasing order), so leftovers of an
// interrupted write are found by probing and removed by the next Set or
// Delete. Account names must therefore not contain '#'.
//
// Writers of the same account in different processes are not serialised by
// this package; a torn result is detected on read. Callers that rotate a
// value from several processes need their own lock.
package keyring

//go:build !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd && !solaris && !illumos

package ca

// On Windows (and other systems) the roots live in a store that
// crypto/x509 only consults through the platform verifier and cannot
// export, so the bundle holds the user's extra CA files and the session CA
// only. A client given the bundle as its only trust (requests'
// REQUESTS_CA_BUNDLE, httpx's SSL_CERT_FILE) then reaches intercepted hosts
// but fails on tunnelled ones unless the user's extra files carry the roots
// those need. Node's NODE_EXTRA_CA_CERTS appends and is unaffected.
var (
	systemRootFiles []string
	systemRootDirs  []string
)

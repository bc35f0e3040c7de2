package ca

// macOS keeps its trust settings in the keychain, which crypto/x509 asks
// through the platform verifier and cannot export. Best effort: the PEM
// snapshot of the system roots that macOS ships for OpenSSL-style clients.
// Roots the user added to the keychain (a corporate CA) are not in it; such a
// CA reaches the child only through SSL_CERT_FILE or REQUESTS_CA_BUNDLE.
var (
	systemRootFiles = []string{"/etc/ssl/cert.pem"}
	systemRootDirs  []string
)

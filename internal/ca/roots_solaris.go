//go:build solaris || illumos

package ca

// systemRootFiles and systemRootDirs follow crypto/x509's root_solaris.go.
var (
	systemRootFiles = []string{
		"/etc/certs/ca-certificates.crt",     // Solaris 11.2+
		"/etc/ssl/certs/ca-certificates.crt", // Joyent SmartOS
		"/etc/ssl/cacert.pem",                // OmniOS
	}
	systemRootDirs = []string{"/etc/certs/CA"}
)

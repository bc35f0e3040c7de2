//go:build dragonfly || freebsd || netbsd || openbsd

package ca

// systemRootFiles and systemRootDirs follow crypto/x509's root_bsd.go.
var (
	systemRootFiles = []string{
		"/usr/local/etc/ssl/cert.pem",            // FreeBSD
		"/etc/ssl/cert.pem",                      // OpenBSD
		"/usr/local/share/certs/ca-root-nss.crt", // DragonFly
		"/etc/openssl/certs/ca-certificates.crt", // NetBSD
	}
	systemRootDirs = []string{
		"/etc/ssl/certs",         // FreeBSD 12.2+
		"/usr/local/share/certs", // FreeBSD
		"/etc/openssl/certs",     // NetBSD
	}
)

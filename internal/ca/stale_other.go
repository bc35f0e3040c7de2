//go:build !unix

package ca

import "io/fs"

// Elsewhere a bundle is swept only once it is stale by age: ownership and
// liveness are not checked the Unix way, so every bundle counts as this
// user's and its crewgate as alive.
func ownedByMe(fs.FileInfo) bool { return true }

func processAlive(int) bool { return true }

package approval

// peer is the process at the other end of a control connection, as the
// kernel names it.
type peer struct {
	uid, pid int
	known    bool // the platform told uid and pid
	// same reports whether pid still names the process that connected, so
	// that a check on pid was a check on the client; true where the platform
	// cannot pin the process.
	same    func() bool
	release func()
}

func unknownPeer() peer {
	return peer{same: func() bool { return true }, release: func() {}}
}

package approval

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerOf names the process at the other end of a unix socket, from
// LOCAL_PEERCRED and LOCAL_PEERPID.
func peerOf(c net.Conn) (peer, error) {
	p := unknownPeer()
	uc, isUnix := c.(*net.UnixConn)
	if !isUnix {
		return p, nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return p, err
	}
	var cred *unix.Xucred
	var cerr, perr error
	pid := 0
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		if cerr == nil {
			pid, perr = unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID)
		}
	}); err != nil {
		return p, err
	}
	if cerr != nil {
		return p, cerr
	}
	if perr != nil {
		pid = 0 // uid known, process not: the client may not answer
	}
	p.uid, p.pid, p.known = int(cred.Uid), pid, true
	return p, nil
}

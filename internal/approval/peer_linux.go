package approval

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCred returns the uid and pid of the process at the other end of a
// unix socket, from SO_PEERCRED.
func peerCred(c net.Conn) (uid, pid int, ok bool, err error) {
	uc, isUnix := c.(*net.UnixConn)
	if !isUnix {
		return 0, 0, false, nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, false, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, false, err
	}
	if cerr != nil {
		return 0, 0, false, cerr
	}
	return int(cred.Uid), int(cred.Pid), true, nil
}

package approval

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCred returns the uid and pid of the process at the other end of a
// unix socket, from LOCAL_PEERCRED and LOCAL_PEERPID.
func peerCred(c net.Conn) (uid, pid int, ok bool, err error) {
	uc, isUnix := c.(*net.UnixConn)
	if !isUnix {
		return 0, 0, false, nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, false, err
	}
	var cred *unix.Xucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		if cerr == nil {
			pid, _ = unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID)
		}
	}); err != nil {
		return 0, 0, false, err
	}
	if cerr != nil {
		return 0, 0, false, cerr
	}
	return int(cred.Uid), pid, true, nil
}

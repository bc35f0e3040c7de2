package approval

import (
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// peerOf names the process at the other end of a unix socket, from
// SO_PEERCRED, and pins it with SO_PEERPIDFD (Linux 6.5 and later), so that
// a client that connects and exits cannot pass off whichever process gets
// its pid next as itself.
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
	var cred *unix.Ucred
	var cerr error
	pidfd := -1
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr == nil {
			if pfd, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
				pidfd = pfd
			}
		}
	}); err != nil {
		return p, err
	}
	if cerr != nil {
		return p, cerr
	}
	p.uid, p.pid, p.known = int(cred.Uid), int(cred.Pid), true
	if pidfd >= 0 {
		// A process holds its pid until it is reaped, so while the pidfd's
		// process is there (a zombie included), the pid is still its.
		p.same = func() bool { return !errors.Is(unix.PidfdSendSignal(pidfd, 0, nil, 0), unix.ESRCH) }
		p.release = func() { unix.Close(pidfd) }
	}
	return p, nil
}

package singularity

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// openPty opens a new pseudo-terminal pair (posix_openpt, unlockpt,
// ptsname). The slave does not turn "\n" into "\r\n" (no ONLCR), so the
// service's lines reach the logs as it wrote them.
func openPty() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	if t, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS); err == nil {
		t.Oflag &^= unix.ONLCR
		_ = unix.IoctlSetTermios(int(slave.Fd()), unix.TCSETS, t)
	}
	return master, slave, nil
}

// attachTerminal gives cmd a pseudo-terminal (compose tty: true) as its
// stdin, stdout, stderr and controlling terminal, in a session of its own,
// and relays what the service writes on it to out until the terminal
// closes. It returns what to do once cmd has started.
func attachTerminal(cmd *exec.Cmd, out io.Writer) (started func(), err error) {
	master, slave, err := openPty()
	if err != nil {
		return nil, fmt.Errorf("tty: %w", err)
	}
	if f, ok := out.(*os.File); ok {
		// The caller closes its copy once the process has started.
		fd, err := unix.Dup(int(f.Fd()))
		if err != nil {
			master.Close()
			slave.Close()
			return nil, fmt.Errorf("tty: %w", err)
		}
		out = os.NewFile(uintptr(fd), f.Name())
	}
	if out == nil {
		out = io.Discard
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// A session of its own (its own process group too, as Setpgid gives
	// every client) with the terminal as its controlling one.
	cmd.SysProcAttr.Setpgid = false
	cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
	return func() {
		slave.Close() // the client has it; the relay ends when it closes
		go func() {
			_, _ = io.Copy(out, master) // ends with EIO once no process holds the terminal
			master.Close()
			if c, ok := out.(io.Closer); ok && out != io.Discard {
				c.Close()
			}
		}()
	}, nil
}

// Package proctree lists the processes of an Apptainer instance from the
// host's /proc, for `sstack top`.
//
// How an instance's processes relate on the host (Apptainer 1.4, checked
// by the integration test): `apptainer instance list` gives the pid of
// the instance's appinit, PID 1 of the instance's own PID namespace, a
// child of the "Apptainer instance: USER [NAME]" monitor. A process
// started with `apptainer exec|run instance://NAME` (as sstack starts a
// service's process) is NOT a descendant of appinit: it joins the
// instance's namespaces as the child of the apptainer client itself
// (which retitles itself "Apptainer runtime parent" and stays in the
// host's PID namespace, a child of whoever ran apptainer: sstack). So
// Tree(instance pid) shows appinit alone (plus what appinit runs, e.g.
// a %startscript), and `top` must use InNamespaceOf(instance pid): every
// process in the PID namespace of appinit, which are appinit, the
// service's process, healthcheck and exec processes and all they
// started, and nothing else. Pids and parent pids are the host's: the
// service process's PPid is the client, outside the list.
package proctree

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Process is one process of an instance as the host sees it: host pids,
// real uid (api.Process in the contract).
type Process struct {
	Pid     int    `json:"Pid"`
	PPid    int    `json:"PPid"`
	UID     int    `json:"UID"`
	Command string `json:"Command"`
}

// procDir is the proc file system read; tests point it elsewhere.
var procDir = "/proc"

// Tree returns process rootPid and all its descendants (by the parent pid
// of /proc/N/stat), sorted by pid. A process that vanishes during the
// scan is left out; rootPid itself missing is an error.
func Tree(rootPid int) ([]Process, error) {
	all, err := scan(procDir, nil)
	if err != nil {
		return nil, err
	}
	children := map[int][]Process{}
	var root *Process
	for i, p := range all {
		if p.Pid == rootPid {
			root = &all[i]
			continue
		}
		children[p.PPid] = append(children[p.PPid], p)
	}
	if root == nil {
		return nil, fmt.Errorf("process %d: %w", rootPid, os.ErrNotExist)
	}
	out := []Process{*root}
	seen := map[int]bool{rootPid: true} // pids reused during the scan could loop
	for i := 0; i < len(out); i++ {
		for _, c := range children[out[i].Pid] {
			if !seen[c.Pid] {
				seen[c.Pid] = true
				out = append(out, c)
			}
		}
	}
	sortByPid(out)
	return out, nil
}

// InNamespaceOf returns every process in the PID namespace of pid (for an
// instance: its appinit), sorted by pid, pid included. A process that
// vanishes during the scan, or whose namespace cannot be read (another
// user's), is left out. When pid is in sstack's own PID namespace (an
// instance without one), listing the namespace would list the whole host:
// it returns Tree(pid) instead.
func InNamespaceOf(pid int) ([]Process, error) {
	ns, err := pidNamespace(procDir, strconv.Itoa(pid))
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	if own, err := pidNamespace(procDir, "self"); err == nil && own == ns {
		return Tree(pid)
	}
	all, err := scan(procDir, func(entry string) bool {
		other, err := pidNamespace(procDir, entry)
		return err == nil && other == ns
	})
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(all, func(p Process) bool { return p.Pid == pid }) {
		return nil, fmt.Errorf("process %d: %w", pid, os.ErrNotExist)
	}
	return all, nil
}

func pidNamespace(proc, entry string) (string, error) {
	return os.Readlink(filepath.Join(proc, entry, "ns", "pid"))
}

// scan reads every process of proc that want (nil: all) accepts, sorted
// by pid.
func scan(proc string, want func(entry string) bool) ([]Process, error) {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if want != nil && !want(e.Name()) {
			continue
		}
		p, err := read(proc, pid)
		if gone(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	sortByPid(out)
	return out, nil
}

// gone: the process exited between the directory listing and the read.
func gone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}

// read reads one process from proc/PID/{stat,status,cmdline}.
func read(proc string, pid int) (Process, error) {
	dir := filepath.Join(proc, strconv.Itoa(pid))
	p := Process{Pid: pid}
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return p, err
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses,
	// so it ends at the last ')'.
	lp, rp := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if lp < 0 || rp < lp {
		return p, fmt.Errorf("%s/stat: unexpected format %q", dir, stat)
	}
	comm := string(stat[lp+1 : rp])
	rest := strings.Fields(string(stat[rp+1:]))
	if len(rest) < 2 {
		return p, fmt.Errorf("%s/stat: unexpected format %q", dir, stat)
	}
	if p.PPid, err = strconv.Atoi(rest[1]); err != nil {
		return p, fmt.Errorf("%s/stat: parent pid %q: %w", dir, rest[1], err)
	}

	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return p, err
	}
	if p.UID, err = realUID(status); err != nil {
		return p, fmt.Errorf("%s/status: %w", dir, err)
	}

	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return p, err
	}
	p.Command = command(cmdline, comm)
	return p, nil
}

// realUID is the first (real) uid of the Uid: line of /proc/N/status.
func realUID(status []byte) (int, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.Atoi(f[0])
		}
	}
	return 0, errors.New("no Uid: line")
}

// command is the command line with its arguments joined by spaces, as ps
// shows it; [comm] for a process without one (kernel threads, zombies).
// Processes that rewrite their argv (appinit) leave NULs and spaces at
// its end: they are dropped.
func command(cmdline []byte, comm string) string {
	s := strings.TrimRight(strings.ReplaceAll(string(cmdline), "\x00", " "), " ")
	if s == "" {
		return "[" + comm + "]"
	}
	return s
}

func sortByPid(ps []Process) {
	slices.SortFunc(ps, func(a, b Process) int { return a.Pid - b.Pid })
}

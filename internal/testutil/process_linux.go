package testutil

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is a child process started by StartProcess, watched until it
// exits.
type Process struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartProcess starts cmd and watches for its exit. Should the calling
// process die first, the kernel sends the child deathSignal, so that no
// child outlives a test binary that crashed.
func StartProcess(cmd *exec.Cmd, deathSignal syscall.Signal) (*Process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = deathSignal
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Pid returns the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited returns a channel that is closed once the process has exited and
// its output has been copied.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// State returns how the process exited, or nil while it runs.
func (p *Process) State() *os.ProcessState {
	select {
	case <-p.exited:
		return p.cmd.ProcessState
	default:
		return nil
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits up to timeout for the process to exit and reports whether it
// did.
func (p *Process) Wait(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.exited:
		return true
	case <-t.C:
		return false
	}
}

// Kill kills the process by its pid and waits until it has exited.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Stop sends SIGTERM to the process and waits up to timeout for it to exit,
// then kills it. It reports whether the process exited within the timeout,
// and the error of sending the signal to a process that had not exited.
func (p *Process) Stop(timeout time.Duration) (bool, error) {
	select {
	case <-p.exited:
		return true, nil
	default:
	}
	err := p.Signal(syscall.SIGTERM)
	if errors.Is(err, os.ErrProcessDone) {
		err = nil
	}
	if p.Wait(timeout) {
		return true, err
	}
	p.Kill()
	return false, err
}

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// process is a child process of a test. Its stdout and stderr go to one
// file, which is logged with any extra log files when the test fails.
type process struct {
	name   string
	cmd    *exec.Cmd
	output string
	logs   []string      // further files the process logs to
	done   chan struct{} // closed once cmd.Wait returned
}

// startProcess starts bin with args. When the test ends the process gets
// SIGTERM, then SIGKILL 5s later, and is waited for, whatever the test's
// outcome: no child outlives its test.
func startProcess(t *testing.T, dir, name string, logs []string, bin string, args ...string) *process {
	t.Helper()
	output := filepath.Join(dir, name+".out")
	f, err := os.Create(output)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childSysProcAttr()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Start()
	// The child has its own descriptor; ours is no longer needed.
	_ = f.Close()
	if err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, output: output, logs: logs, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Logf("started %s (pid %d): %s %q", name, cmd.Process.Pid, bin, args)
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			p.dumpLogs(t)
		}
	})
	return p
}

// alive returns an error once the process has exited.
func (p *process) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited early: %s", p.name, p.cmd.ProcessState)
	default:
		return nil
	}
}

// signal sends sig to the process.
func (p *process) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
}

// wait waits up to timeout for the process to exit and returns its exit
// code (-1 when a signal killed it).
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s still running %v after it was told to stop", p.name, timeout)
		return 0
	}
}

func (p *process) dumpLogs(t *testing.T) {
	t.Helper()
	for _, file := range append([]string{p.output}, p.logs...) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Logf("%s: %v", p.name, err)
			continue
		}
		t.Logf("==== %s: %s ====\n%s", p.name, filepath.Base(file), b)
	}
}

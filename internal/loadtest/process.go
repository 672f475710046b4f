package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
)

// daemon is a child process of the harness (a poller or receiver from the
// same binary, or Prometheus), so its CPU and memory are its own.
type daemon struct {
	name    string
	cmd     *exec.Cmd
	monitor string // http://host:port of its monitor endpoint (Prometheus: its web UI)
	logPath string
	started time.Time // just before the process was started
	done    chan struct{}
	waitErr error
}

// startDaemon runs `<exe> --config <config> <role>` with its output in
// dir/<name>.log and waits until readyPath (readyz: connected, or healthz:
// listening) on its monitor port answers 200.
func startDaemon(ctx context.Context, exe, dir, name, role, config string, monitorPort int, readyPath string) (*daemon, error) {
	return startChild(ctx, dir, name, fmt.Sprintf("http://127.0.0.1:%d", monitorPort), readyPath, exe, "--config", config, role)
}

// The daemons' monitor paths startDaemon waits for.
const (
	readyz  = "/readyz"
	healthz = "/healthz"
)

// startChild runs exe with args, its output in dir/<name>.log, and waits
// until base+readyPath answers 200.
func startChild(ctx context.Context, dir, name, base, readyPath, exe string, args ...string) (*daemon, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	started := time.Now()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, monitor: base, logPath: logPath, started: started, done: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(d.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if get(ctx, d.monitor+readyPath, io.Discard) == nil {
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("%s exited before it was ready (%w); see %s", name, d.waitErr, logPath)
		case <-ctx.Done():
			d.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("%s not ready after 30s; see %s", name, logPath)
		}
	}
}

// cpu is the daemon's user plus system CPU time so far, in seconds.
func (d *daemon) cpu() (float64, error) {
	p, err := procfs.NewProc(d.cmd.Process.Pid)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", d.name, err)
	}
	st, err := p.Stat()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", d.name, err)
	}
	return st.CPUTime(), nil
}

// stop reads the daemon's peak resident memory, then sends SIGTERM and
// waits for the exit (killing after 30s). The peak is VmHWM, read while the
// process lives: rusage's maxrss of a child started with Go's vfork-style
// clone starts from the parent's own peak at exec, which is the harness's.
func (d *daemon) stop() (peakRSS int64) {
	peakRSS = d.peakRSS()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	return peakRSS
}

// kill reads the daemon's peak resident memory, as stop does, then ends
// it with SIGKILL, as a crash would, and waits for the exit.
func (d *daemon) kill() (peakRSS int64) {
	peakRSS = d.peakRSS()
	_ = d.cmd.Process.Kill()
	<-d.done
	return peakRSS
}

// peakRSS is the daemon's VmHWM so far, or 0 when it cannot be read.
func (d *daemon) peakRSS() int64 {
	p, err := procfs.NewProc(d.cmd.Process.Pid)
	if err != nil {
		return 0
	}
	st, err := p.NewStatus()
	if err != nil {
		return 0
	}
	return int64(st.VmHWM)
}

// families reads the daemon's own metrics.
func (d *daemon) families(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	pr, pw := io.Pipe()
	go func() { _ = pw.CloseWithError(get(ctx, d.monitor+"/metrics", pw)) }()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(pr)
	discard(pr)
	if err != nil {
		return nil, fmt.Errorf("%s metrics: %w", d.name, err)
	}
	return fams, nil
}

// profile saves a CPU profile of seconds from the daemon's /debug/pprof.
func (d *daemon) profile(ctx context.Context, seconds int, path string) error {
	return d.save(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), path)
}

// save writes what the daemon's monitor serves at uri to path.
func (d *daemon) save(ctx context.Context, uri, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = get(ctx, d.monitor+uri, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	return nil
}

// errBodyShown is how much of a non-200 answer's body get puts in its
// error: enough for Prometheus's API error or a daemon's reason.
const errBodyShown = 512

// get copies url's body to w when it answers 200. Any other status is an
// error naming the URL, the status and the start of the body, which is
// not written to w; every error names the URL.
func get(ctx context.Context, url string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err // a *url.Error, which names the URL
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, errBodyShown))
		discard(resp.Body)
		if msg := strings.TrimSpace(string(body)); msg != "" {
			return fmt.Errorf("GET %s: HTTP %s: %s", url, resp.Status, msg)
		}
		return fmt.Errorf("GET %s: HTTP %s", url, resp.Status)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// sum adds the values of a family's series whose labels include match.
func sum(fams map[string]*dto.MetricFamily, name string, match map[string]string) (float64, bool) {
	mf, ok := fams[name]
	if !ok {
		return 0, false
	}
	total := 0.0
	for _, m := range mf.GetMetric() {
		if !hasLabels(m, match) {
			continue
		}
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
	}
	return total, true
}

// mean is the average over a family's series (their count is the second
// result).
func mean(fams map[string]*dto.MetricFamily, name string) (float64, int) {
	mf := fams[name]
	n := len(mf.GetMetric())
	if n == 0 {
		return 0, 0
	}
	total, _ := sum(fams, name, nil)
	return total / float64(n), n
}

func hasLabels(m *dto.Metric, match map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := match[l.GetName()]; ok && v == l.GetValue() {
			found++
		}
	}
	return found == len(match)
}

var errTimeout = errors.New("timed out")

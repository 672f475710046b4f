// Package e2e runs the built prometheus-streams binary the way an operator
// does: a 1.0 configuration file, a real node exporter, NATS Streaming, a
// Pushgateway and Debian's Prometheus, each in its own process or on
// loopback. It asserts on what the central Prometheus ends up storing.
package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/choria-io/prometheus-streams/internal/testenv"
	"go.uber.org/goleak"
)

// binary is the path of the prometheus-streams binary TestMain built; it
// is written once, before any test runs, and only read afterwards.
var binary string

// TestMain builds the binary once for every test (with -race when the
// tests run with -race, so the daemons are race-checked too) and fails the
// package if a goroutine of the embedded servers outlives the tests.
func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "prometheus-streams-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if raceEnabled {
		if err := noRaceExitSleep(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
	}
	binary, err = build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	testenv.WaitingTests(parallel)
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goroutines outlived the tests:", err)
			return 1
		}
	}
	return code
}

// parallel is how many of the tests that call t.Parallel run at once,
// unless -parallel says otherwise. Its default, GOMAXPROCS, suits tests
// that compute; these mostly wait, on child processes, scrape intervals
// and Prometheus's own pace (its first scrape of a new target comes 5s or
// more after it starts). The tests that assert a time bound, or count what
// a delay would change, do not call t.Parallel, nor does the heaviest
// one: they run first, one at a time.
const parallel = 4

// noRaceExitSleep sets atexit_sleep_ms=0 in GORACE for the child processes
// (they inherit the environment), unless GORACE sets it already. A binary
// built with -race otherwise sleeps a second before it exits, for other
// threads to report races they are still finding; it still waits for the
// reports already being written, and still exits 66 after any. The tests
// stop every daemon they start, to check its exit or in a cleanup, and
// each stop took that second.
func noRaceExitSleep() error {
	v := os.Getenv("GORACE")
	if strings.Contains(v, "atexit_sleep_ms") {
		return nil
	}
	return os.Setenv("GORACE", strings.TrimSpace(v+" atexit_sleep_ms=0"))
}

// build compiles ./cmd/prometheus-streams of this module into dir.
func build(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "prometheus-streams")
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/prometheus-streams")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return out, nil
}

// moduleRoot is the directory of the go.mod the tests run under.
func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: the tests do not run inside a module")
	}
	return filepath.Dir(gomod), nil
}

package testenv

import (
	"testing"

	"github.com/choria-io/prometheus-streams/internal/freeport"
)

// FreePort returns a loopback port nothing listens on, for a server a test
// starts later or starts again on the same port, and for connections that
// must be refused: freeport.Pick's, below the kernel's ephemeral range, so
// that a server another test starts on port 0 meanwhile does not take it.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FreePorts returns n distinct FreePort ports, for programs that take port
// numbers on their command line or in a file.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = FreePort(t)
	}
	return ports
}

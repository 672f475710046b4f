package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// FreePort returns a loopback port nothing listens on, for a server a test
// starts later or starts again on the same port, and for connections that
// must be refused. The kernel hands out ports from its ephemeral range
// (net.ipv4.ip_local_port_range, 32768-60999 by default) to every server
// started on port 0 and every outgoing connection, so a port it gave a
// moment ago can be taken again at once by a test running in parallel, or
// by another package's. FreePort picks one at random below that range,
// where only a server asking for that very port would take it, and never
// the same one twice in a process. Where the range leaves no room below
// it, it asks the kernel for one, as before.
func FreePort(t testing.TB) int {
	t.Helper()
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.given == nil {
		ports.given = map[int]bool{}
		ports.lo, ports.hi = belowEphemeral()
	}
	for range 1000 {
		p := 0 // the kernel's choice
		if ports.hi > ports.lo {
			p = ports.lo + rand.IntN(ports.hi-ports.lo)
		}
		if ports.given[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // in use
		}
		p = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if ports.given[p] {
			continue
		}
		ports.given[p] = true
		return p
	}
	t.Fatalf("no free loopback port in [%d, %d) after 1000 tries", ports.lo, ports.hi)
	return 0
}

// ports are those FreePort gave in this process, and the range it picks
// from. It is package state, unlike everything else here, because "never
// the same port twice in a process" is a promise about the process: tests
// of one package running in parallel share it.
var ports struct {
	mu     sync.Mutex
	given  map[int]bool
	lo, hi int
}

// belowEphemeral returns up to 16384 ports just below the kernel's
// ephemeral range and above 1024, or an empty range where the range cannot
// be read or leaves fewer than 4096 ports below it.
func belowEphemeral() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	var first, last int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &first, &last); err != nil {
		return 0, 0
	}
	hi = first
	lo = max(hi-16384, 1025)
	if hi-lo < 4096 {
		return 0, 0
	}
	return lo, hi
}

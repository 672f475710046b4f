//go:build race

package envelope

// raceEnabled: under the race detector sync.Pool drops items at random, so
// tests of pooled reuse cannot expect zero allocations.
const raceEnabled = true

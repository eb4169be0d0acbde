//go:build race

package tunnel

// The race detector makes sync.Pool drop items at random.
const raceEnabled = true

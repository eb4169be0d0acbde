//go:build !race

package nucleus

const raceEnabled = false

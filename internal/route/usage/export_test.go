package usage

// Drain takes up to n queued records without writing them (benchmarks).
func (r *Recorder) Drain(n int) {
	r.mu.Lock()
	k := min(n, len(r.queue))
	r.queue = append(r.queue[:0], r.queue[k:]...)
	r.mu.Unlock()
}

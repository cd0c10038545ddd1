package process

import "runtime"

// runtimeMem is a snapshot of the allocator's counters.
type runtimeMem struct{ totalAlloc, heapInuse uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.totalAlloc, m.heapInuse = s.TotalAlloc, s.HeapInuse
}

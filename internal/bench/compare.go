package bench

import (
	"slices"
)

// A comparison (`parley bench compare`) runs one scenario on two server
// builds in turn, A B, B A, A B, ..., so that the drift of a shared
// machine falls on both alike, and compares the medians of each
// build's runs. Throughput on this machine swings 2x from hour to hour;
// the ratio of medians measured side by side in one comparison does not.

// Side is one of the two builds of a comparison.
type Side int

// The two sides.
const (
	Baseline Side = iota
	Candidate
)

func (s Side) String() string {
	if s == Candidate {
		return "candidate"
	}
	return "baseline"
}

// Schedule is the order of a comparison's runs: rounds pairs, the
// baseline first in odd rounds and the candidate first in even ones
// (A B, B A, A B, ...), so that a machine whose load drifts one way over
// the comparison does not favour whichever build always runs second.
func Schedule(rounds int) []Side {
	order := make([]Side, 0, 2*max(rounds, 0))
	for i := range rounds {
		if i%2 == 0 {
			order = append(order, Baseline, Candidate)
		} else {
			order = append(order, Candidate, Baseline)
		}
	}
	return order
}

// CompareRun is one run of a comparison: its result, or why there is
// none. A run whose result fails its checks (Result.OK) still has one.
type CompareRun struct {
	Round  int     `json:"round"` // from 1
	Side   string  `json:"side"`
	Result *Result `json:"result,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// OK reports whether the run finished and passed its checks.
func (r *CompareRun) OK() bool { return r.Error == "" && r.Result != nil && r.Result.OK() }

// Figure is one figure a comparison takes the median of: Key is its JSON
// name in Result, Get reads it (ok false when the run does not have it).
type Figure struct {
	Key, Label string
	Get        func(*Result) (v float64, ok bool)
}

// CompareFigures are the figures a comparison reports, in order.
var CompareFigures = []Figure{
	{"msgs_per_sec", "msgs/s (to the last delivery)", func(r *Result) (float64, bool) { return r.MsgsPerSec, true }},
	{"deliveries_per_sec", "deliveries/s (to the last delivery)", func(r *Result) (float64, bool) { return r.DeliveriesPerSec, true }},
	{"msgs_per_sec_to_last_ack", "msgs/s acked (to the last ack)", func(r *Result) (float64, bool) { return r.MsgsPerSecToLastAck, true }},
	{"server_cpu_us_per_msg", "server CPU µs per message", func(r *Result) (float64, bool) {
		return r.ServerCPUUsPerMsg, r.ServerCPUUsPerMsg > 0
	}},
	{"server_cpu_us_per_delivery", "server CPU µs per delivery", func(r *Result) (float64, bool) {
		return r.ServerCPUUsPerDelivery, r.ServerCPUUsPerDelivery > 0
	}},
	{"e2e_p50_ms", "e2e p50 ms", func(r *Result) (float64, bool) { return r.E2EP50Ms, true }},
	{"e2e_p99_ms", "e2e p99 ms", func(r *Result) (float64, bool) { return r.E2EP99Ms, true }},
	{"after_accept_p99_ms", "after acceptance p99 ms", func(r *Result) (float64, bool) {
		if r.AfterAcceptMs == nil {
			return 0, false
		}
		return r.AfterAcceptMs.P99, true
	}},
	{"push_queue_peak", "push queue peak (jobs)", func(r *Result) (float64, bool) {
		if r.PushQueuePeak == nil {
			return 0, false
		}
		return float64(*r.PushQueuePeak), true
	}},
}

// SideSummary is one build's share of a comparison.
type SideSummary struct {
	Parleyd string `json:"parleyd"`
	OKRuns  int    `json:"ok_runs"` // runs that passed their checks: the medians are over these
	// Median holds, for each figure every OK run has, its median.
	Median map[string]float64 `json:"median"`
}

// Comparison is what `parley bench compare` found.
type Comparison struct {
	Scenario  string             `json:"scenario"`
	Args      []string           `json:"args"` // the bench flags every run got
	Rounds    int                `json:"rounds"`
	Baseline  SideSummary        `json:"baseline"`
	Candidate SideSummary        `json:"candidate"`
	Ratio     map[string]float64 `json:"ratio"` // candidate median / baseline median, where both exist and the baseline's is not 0
	Runs      []CompareRun       `json:"runs"`  // in the order they ran
	OK        bool               `json:"ok"`    // every run finished and passed its checks
}

// Compare runs the schedule of rounds, calling run for each run in
// order (after is called with each finished run, for progress), and
// summarizes. A run that returns an error is recorded and the comparison
// goes on.
func Compare(rounds int, run func(round int, side Side) (*Result, error), after func(CompareRun)) *Comparison {
	c := &Comparison{Rounds: rounds}
	for i, side := range Schedule(rounds) {
		r := CompareRun{Round: i/2 + 1, Side: side.String()}
		res, err := run(r.Round, side)
		r.Result = res
		if err != nil {
			r.Error = err.Error()
		}
		c.Runs = append(c.Runs, r)
		if after != nil {
			after(r)
		}
	}
	c.Summarize()
	return c
}

// Summarize fills the medians, the ratios and OK from Runs.
func (c *Comparison) Summarize() {
	c.OK = len(c.Runs) > 0
	var ok [2][]*Result
	for i := range c.Runs {
		r := &c.Runs[i]
		if !r.OK() {
			c.OK = false
			continue
		}
		side := Baseline
		if r.Side == Candidate.String() {
			side = Candidate
		}
		ok[side] = append(ok[side], r.Result)
	}
	c.Baseline.OKRuns, c.Candidate.OKRuns = len(ok[Baseline]), len(ok[Candidate])
	c.Baseline.Median, c.Candidate.Median = medians(ok[Baseline]), medians(ok[Candidate])
	c.Ratio = map[string]float64{}
	for k, b := range c.Baseline.Median {
		if v, has := c.Candidate.Median[k]; has && b != 0 {
			c.Ratio[k] = v / b
		}
	}
}

// medians is, for each figure that every one of results has, its median.
func medians(results []*Result) map[string]float64 {
	m := map[string]float64{}
	if len(results) == 0 {
		return m
	}
	for _, f := range CompareFigures {
		var vs []float64
		for _, r := range results {
			if v, ok := f.Get(r); ok {
				vs = append(vs, v)
			}
		}
		if len(vs) == len(results) {
			m[f.Key] = Median(vs)
		}
	}
	return m
}

// Median is the middle value of vs, or the mean of the two middle ones
// when their number is even; 0 for none. vs is not changed.
func Median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

package bench

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{7}, 7},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{10, 10, 1}, 10},
		{[]float64{5, 100, 6, 7, 1000}, 7},
	} {
		in := append([]float64(nil), c.in...)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !reflect.DeepEqual(in, c.in) {
			t.Errorf("Median changed its input: %v, was %v", c.in, in)
		}
	}
}

func TestSchedule(t *testing.T) {
	got := Schedule(3)
	want := []Side{Baseline, Candidate, Candidate, Baseline, Baseline, Candidate}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Schedule(3) = %v, want %v", got, want)
	}
	if n := len(Schedule(0)); n != 0 {
		t.Fatalf("Schedule(0) has %d runs", n)
	}
}

// okResult is a run that passed its checks with the given figures.
func okResult(msgs, cpuMsg, cpuDelivery, p50, p99 float64, peak *int64) *Result {
	return &Result{Scenario: "direct", Sent: 100, Acked: 100, Expected: 100, Delivered: 100,
		MsgsPerSec: msgs, DeliveriesPerSec: 2 * msgs, MsgsPerSecToLastAck: msgs + 1,
		ServerCPUUsPerMsg: cpuMsg, ServerCPUUsPerDelivery: cpuDelivery, E2EP50Ms: p50, E2EP99Ms: p99, PushQueuePeak: peak}
}

func ptr(n int64) *int64 { return &n }

// TestCompare runs a fake comparison: the runs alternate baseline and
// candidate, round numbers count pairs, medians are per build over the
// runs that passed their checks, ratios are candidate over baseline, and
// a failed or unchecked run is recorded, shown, and left out.
func TestCompare(t *testing.T) {
	base := []*Result{
		okResult(1000, 200, 100, 10, 50, ptr(5)),
		okResult(3000, 100, 50, 30, 70, ptr(15)),
		okResult(2000, 300, 150, 20, 60, ptr(10)),
	}
	cand := []*Result{
		okResult(2500, 110, 55, 12, 40, ptr(0)),
		nil, // the second candidate run fails outright
		okResult(3500, 90, 45, 8, 44, ptr(2)),
	}
	lost := okResult(9999, 1, 1, 1, 1, ptr(0))
	lost.Lost, lost.Delivered = 3, 97
	var calls []string
	var seen []CompareRun
	c := Compare(3, func(round int, side Side) (*Result, error) {
		calls = append(calls, side.String()+string(rune('0'+round)))
		if side == Baseline {
			return base[round-1], nil
		}
		if cand[round-1] == nil {
			return nil, errors.New("parleyd exited")
		}
		return cand[round-1], nil
	}, func(r CompareRun) { seen = append(seen, r) })
	if want := []string{"baseline1", "candidate1", "candidate2", "baseline2", "baseline3", "candidate3"}; !reflect.DeepEqual(calls, want) {
		t.Fatalf("runs in order %v, want %v", calls, want)
	}
	if len(seen) != 6 || len(c.Runs) != 6 || seen[2].Error != "parleyd exited" || c.Runs[2].Side != "candidate" || c.Runs[2].Round != 2 {
		t.Fatalf("runs recorded: %+v", c.Runs)
	}
	if c.OK {
		t.Fatal("a comparison with a failed run is OK")
	}
	if c.Baseline.OKRuns != 3 || c.Candidate.OKRuns != 2 {
		t.Fatalf("OK runs %d and %d, want 3 and 2", c.Baseline.OKRuns, c.Candidate.OKRuns)
	}
	wantBase := map[string]float64{"msgs_per_sec": 2000, "deliveries_per_sec": 4000, "msgs_per_sec_to_last_ack": 2001,
		"server_cpu_us_per_msg": 200, "server_cpu_us_per_delivery": 100, "e2e_p50_ms": 20, "e2e_p99_ms": 60, "push_queue_peak": 10}
	if !reflect.DeepEqual(c.Baseline.Median, wantBase) {
		t.Fatalf("baseline medians %v, want %v", c.Baseline.Median, wantBase)
	}
	wantCand := map[string]float64{"msgs_per_sec": 3000, "deliveries_per_sec": 6000, "msgs_per_sec_to_last_ack": 3001,
		"server_cpu_us_per_msg": 100, "server_cpu_us_per_delivery": 50, "e2e_p50_ms": 10, "e2e_p99_ms": 42, "push_queue_peak": 1}
	if !reflect.DeepEqual(c.Candidate.Median, wantCand) {
		t.Fatalf("candidate medians %v, want %v", c.Candidate.Median, wantCand)
	}
	for k, want := range map[string]float64{"msgs_per_sec": 1.5, "server_cpu_us_per_msg": 0.5, "server_cpu_us_per_delivery": 0.5,
		"e2e_p50_ms": 0.5, "e2e_p99_ms": 0.7, "push_queue_peak": 0.1} {
		if got := c.Ratio[k]; math.Abs(got-want) > 1e-12 {
			t.Errorf("ratio %s = %v, want %v", k, got, want)
		}
	}

	// A run that failed its checks keeps its result but stays out of the
	// medians; a build with no push queue (an older one) has no peak and
	// no ratio for it; the JSON carries everything.
	c = Compare(2, func(round int, side Side) (*Result, error) {
		if side == Candidate {
			if round == 1 {
				return lost, errors.New("the run failed its checks")
			}
			return okResult(4000, 80, 40, 5, 20, ptr(3)), nil
		}
		return okResult(1000*float64(round), 100, 50, 10, 30, nil), nil
	}, nil)
	if c.OK || c.Candidate.OKRuns != 1 || c.Candidate.Median["msgs_per_sec"] != 4000 || c.Runs[1].Result != lost {
		t.Fatalf("a run that failed its checks: %+v", c)
	}
	if _, has := c.Baseline.Median["push_queue_peak"]; has {
		t.Fatal("a median peak for a build without a push queue")
	}
	if _, has := c.Ratio["push_queue_peak"]; has {
		t.Fatal("a ratio of peaks for a build without a push queue")
	}
	if got := c.Ratio["msgs_per_sec"]; got != 4000/1500.0 {
		t.Fatalf("ratio with an even number of baseline runs: %v", got)
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back Comparison
	if err := json.Unmarshal(data, &back); err != nil || len(back.Runs) != 4 || back.Runs[1].Error == "" || back.Ratio["msgs_per_sec"] != c.Ratio["msgs_per_sec"] {
		t.Fatalf("JSON round trip: %v %s", err, data)
	}

	// Every run passing: OK. A baseline median of 0 gives no ratio.
	zero := okResult(0, 100, 50, 0, 0, ptr(0))
	c = Compare(1, func(int, Side) (*Result, error) { return zero, nil }, nil)
	if !c.OK {
		t.Fatal("a comparison whose runs all passed is not OK")
	}
	if _, has := c.Ratio["msgs_per_sec"]; has {
		t.Fatal("a ratio over a baseline median of 0")
	}
	if c.Ratio["server_cpu_us_per_msg"] != 1 {
		t.Fatalf("identical runs: ratio %v", c.Ratio["server_cpu_us_per_msg"])
	}
}

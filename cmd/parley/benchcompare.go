package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/internal/bench"
)

const benchCompareUsage = `usage: parley bench compare --baseline BUILD --candidate BUILD [--rounds N] [--json] SCENARIO [bench flags]

Runs "parley bench SCENARIO --spawn" on two parleyd builds in turn, for N
rounds of one run each, the baseline first in odd rounds and the candidate
first in even ones: A B, B A, A B, ... Every run starts a fresh parleyd
(PARLEY_LIMITS=off, a new temporary data directory) and a fresh load
generator (this binary, the same for both builds), so that the drift of a
shared machine falls on both alike. It prints each run's figures as it
finishes, then the medians of each build over its runs that passed their
checks, and candidate/baseline.

BUILD is a directory holding the build's server as BUILD/parleyd, or the
path of a parleyd binary. Nothing else of the build is used: the load
generator is always this parley.

SCENARIO is direct or group. The bench flags are those of
"parley bench SCENARIO" (parley bench direct -h), except --spawn,
--server, --parleyd, --admin, --metrics and --json, which compare sets.

The exit status is non-zero if any run failed or failed its checks (lost,
duplicated or reordered messages, unacknowledged sends); its figures are
shown but left out of the medians.

Flags:
`

// benchCompareCommand is `parley bench compare`.
func benchCompareCommand(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("parley bench compare", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var baseline, candidate string
	var rounds int
	var pause time.Duration
	var asJSON bool
	fs.StringVar(&baseline, "baseline", "", "the baseline build: a directory holding parleyd, or a parleyd binary")
	fs.StringVar(&candidate, "candidate", "", "the candidate build: a directory holding parleyd, or a parleyd binary")
	fs.IntVar(&rounds, "rounds", 3, "rounds; each runs both builds, the baseline first in odd rounds")
	fs.DurationVar(&pause, "pause", 2*time.Second, "pause between runs (the previous server's sockets close, the machine settles)")
	fs.BoolVar(&asJSON, "json", false, "print the comparison as one JSON object on the last line")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, benchCompareUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	scenario, benchArgs := fs.Arg(0), fs.Args()[1:]
	if scenario != "direct" && scenario != "group" {
		return parley.Errorf(parley.CodeInvalidRequest, "parley bench compare runs direct or group, not %q", scenario)
	}
	if rounds < 1 {
		return parley.Errorf(parley.CodeInvalidRequest, "--rounds must be at least 1")
	}
	if err := checkCompareBenchArgs(benchArgs); err != nil {
		return err
	}
	bins := [2]string{}
	for i, b := range []string{baseline, candidate} {
		name := []string{"--baseline", "--candidate"}[i]
		if b == "" {
			return parley.Errorf(parley.CodeInvalidRequest, "%s is required", name)
		}
		bin, err := parleydOf(b)
		if err != nil {
			return parley.Errorf(parley.CodeInvalidRequest, "%s: %v", name, err)
		}
		bins[i] = bin
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "parley bench compare: %s %s; rounds: %d (A B, B A, ...)\nbaseline  %s\ncandidate %s\n",
		scenario, strings.Join(benchArgs, " "), rounds, bins[bench.Baseline], bins[bench.Candidate])
	first := true
	run := func(round int, side bench.Side) (*bench.Result, error) {
		if !first {
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		first = false
		return runBenchChild(ctx, self, bins[side], scenario, benchArgs, e.stderr)
	}
	c := bench.Compare(rounds, run, func(r bench.CompareRun) { printCompareRun(e.stdout, r) })
	c.Scenario, c.Args = scenario, benchArgs
	c.Baseline.Parleyd, c.Candidate.Parleyd = bins[bench.Baseline], bins[bench.Candidate]
	printComparison(e.stdout, c)
	if asJSON {
		data, err := json.Marshal(c)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, string(data))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !c.OK {
		return parley.Errorf(parley.CodeInternal, "some runs failed or failed their checks: their figures are not in the medians")
	}
	return nil
}

// checkCompareBenchArgs parses the bench flags as parley bench would,
// so that a mistake shows before the first run, and refuses those
// compare sets itself.
func checkCompareBenchArgs(args []string) error {
	fs, _ := newBenchFlags(io.Discard)
	if err := fs.Parse(args); err != nil {
		return parley.Errorf(parley.CodeInvalidRequest, "bench flags: %v", err)
	}
	if fs.NArg() > 0 {
		return parley.Errorf(parley.CodeInvalidRequest, "bench flags: unexpected argument %q", fs.Arg(0))
	}
	if f := fs.Lookup("accounts"); f != nil && f.Value.String() != "" {
		return parley.Errorf(parley.CodeInvalidRequest, "parley bench compare spawns each server on an empty store: use --seed-accounts, not --accounts")
	}
	var set []string
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains([]string{"spawn", "server", "parleyd", "admin", "metrics", "json"}, f.Name) {
			set = append(set, "--"+f.Name)
		}
	})
	if len(set) > 0 {
		return parley.Errorf(parley.CodeInvalidRequest, "parley bench compare sets %s itself", strings.Join(set, ", "))
	}
	return nil
}

// parleydOf is the parleyd binary of a build: DIR/parleyd for a
// directory, else the path itself; it must be an executable file.
func parleydOf(build string) (string, error) {
	st, err := os.Stat(build)
	if err != nil {
		return "", err
	}
	bin := build
	if st.IsDir() {
		bin = filepath.Join(build, "parleyd")
		if st, err = os.Stat(bin); err != nil {
			return "", fmt.Errorf("no parleyd in the directory %s", build)
		}
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s is not an executable file", bin)
	}
	return filepath.Abs(bin)
}

// runBenchChild runs `parley bench SCENARIO --spawn --parleyd BIN --json
// ARGS` as a child process and returns the result it printed last. Its
// progress and the spawned server's notice go to stderr. A run whose
// checks failed returns its result and an error.
func runBenchChild(ctx context.Context, self, bin, scenario string, args []string, stderr io.Writer) (*bench.Result, error) {
	argv := append([]string{"bench", scenario, "--spawn", "--parleyd", bin, "--json"}, args...)
	cmd := exec.CommandContext(ctx, self, argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, stderr
	runErr := cmd.Run()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var res *bench.Result
	if last := lines[len(lines)-1]; strings.HasPrefix(last, "{") {
		res = &bench.Result{}
		if err := json.Unmarshal([]byte(last), res); err != nil {
			return nil, fmt.Errorf("reading the run's result: %w", err)
		}
	}
	switch {
	case runErr != nil && res == nil:
		return nil, fmt.Errorf("parley %s: %w\n%s", strings.Join(argv, " "), runErr, out.String())
	case runErr != nil:
		return res, fmt.Errorf("the run failed its checks: %w", runErr)
	case res == nil:
		return nil, errors.New("the run printed no result")
	}
	return res, nil
}

// printCompareRun prints one run's figures.
func printCompareRun(w io.Writer, r bench.CompareRun) {
	fmt.Fprintf(w, "round %d %-9s ", r.Round, r.Side)
	if res := r.Result; res != nil {
		fmt.Fprintf(w, "%.0f msgs/s, %.0f deliveries/s (acked %.0f msgs/s to the last ack); server CPU %.1f µs/msg, %.1f µs/delivery; e2e p50 %.1f ms, p99 %.1f ms",
			res.MsgsPerSec, res.DeliveriesPerSec, res.MsgsPerSecToLastAck, res.ServerCPUUsPerMsg, res.ServerCPUUsPerDelivery, res.E2EP50Ms, res.E2EP99Ms)
		if a := res.AfterAcceptMs; a != nil {
			fmt.Fprintf(w, "; after acceptance p99 %.1f ms", a.P99)
		}
		if res.PushQueuePeak != nil {
			fmt.Fprintf(w, "; push queue peak %d", *res.PushQueuePeak)
			if res.PushDrainSeconds != nil {
				fmt.Fprintf(w, ", drained %.1fs after the last delivery", *res.PushDrainSeconds)
			}
			if res.PushQueueLeft == nil || *res.PushQueueLeft != 0 {
				fmt.Fprint(w, " (NOT DRAINED)")
			}
		}
		if !res.OK() {
			fmt.Fprintf(w, "; CHECK FAILED: lost %d, duplicates %d, reordered %d, sent %d, acked %d", res.Lost, res.Duplicates, res.Reordered, res.Sent, res.Acked)
		}
	}
	if r.Error != "" {
		fmt.Fprintf(w, " error: %s", r.Error)
	}
	fmt.Fprintln(w)
}

// printComparison prints the medians and the ratios.
func printComparison(w io.Writer, c *bench.Comparison) {
	fmt.Fprintf(w, "medians over %d baseline and %d candidate runs that passed their checks:\n", c.Baseline.OKRuns, c.Candidate.OKRuns)
	fmt.Fprintf(w, "%-38s %12s %12s %20s\n", "", "baseline", "candidate", "candidate/baseline")
	for _, f := range bench.CompareFigures {
		b, hasB := c.Baseline.Median[f.Key]
		v, hasC := c.Candidate.Median[f.Key]
		if !hasB && !hasC {
			continue
		}
		ratio := "-"
		if r, ok := c.Ratio[f.Key]; ok {
			ratio = fmt.Sprintf("%.3f", r)
		}
		fmt.Fprintf(w, "%-38s %12s %12s %20s\n", f.Label, figureCell(b, hasB), figureCell(v, hasC), ratio)
	}
	for _, r := range c.Runs {
		if res := r.Result; res != nil && res.PushQueuePeak != nil && (res.PushQueueLeft == nil || *res.PushQueueLeft != 0) {
			fmt.Fprintf(w, "warning: round %d %s: the push queue did not drain within --push-drain; its CPU figures count only to then\n", r.Round, r.Side)
		}
	}
}

func figureCell(x float64, has bool) string {
	switch {
	case !has:
		return "-"
	case x >= 1000:
		return fmt.Sprintf("%.0f", x)
	default:
		return fmt.Sprintf("%.1f", x)
	}
}

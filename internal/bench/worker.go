package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"
)

// A process may hold 20,000 open files here, so past PerProcess
// connections the connections scenario runs worker processes (`parley
// bench-worker`), each holding a share. The coordinator writes a
// workerJob as one JSON line to the worker's stdin; the worker dials,
// reports workerStatus lines on stdout, holds the connections until its
// stdin closes, then closes them and exits.

type workerJob struct {
	Server      string   `json:"server"`
	WSServers   []string `json:"ws_servers,omitempty"`
	Tokens      []string `json:"tokens"` // one per connection
	First       int      `json:"first"`  // index of the first connection (source address spread)
	SourceAddrs int      `json:"source_addrs"`
	DialConc    int      `json:"dial_conc"`
}

type workerStatus struct {
	Ready  int64   `json:"ready"`
	Failed int64   `json:"failed"`
	Closed int64   `json:"closed"` // closed by the server while held
	Done   bool    `json:"done"`   // every dial finished
	Secs   float64 `json:"secs"`   // time to finish dialling
	Err    string  `json:"err,omitempty"`
}

// RunWorker is the body of `parley bench-worker`.
func RunWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	rd := bufio.NewReader(in)
	line, err := rd.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the job: %w", err)
	}
	var job workerJob
	if err := json.Unmarshal(line, &job); err != nil {
		return fmt.Errorf("decoding the job: %w", err)
	}
	b := &bench{o: Options{Server: job.Server, WSServers: job.WSServers, SourceAddrs: job.SourceAddrs, DialConc: job.DialConc, PerToken: 1}, res: &Result{Errors: map[string]int64{}}}
	b.o.defaults()
	if err := raiseFileLimit(uint64(len(job.Tokens)) + 256); err != nil {
		return err
	}
	var mu sync.Mutex
	report := func(s workerStatus) {
		mu.Lock()
		defer mu.Unlock()
		data, _ := json.Marshal(s)
		fmt.Fprintln(out, string(data))
	}
	devs := make([]device, len(job.Tokens))
	for i, t := range job.Tokens {
		devs[i] = device{token: t}
	}
	var ready atomic.Int64
	conns := make([]*conn, len(devs))
	start := time.Now()
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				report(workerStatus{Ready: ready.Load(), Failed: b.failed.Load()})
			}
		}
	}()
	_ = forEach(ctx, len(devs), b.o.DialConc, func(ctx context.Context, i int) error {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		k, err := b.dial(dctx, job.First+i, devs[i])
		cancel()
		if err != nil {
			b.failed.Add(1)
			return nil
		}
		conns[i] = k
		ready.Add(1)
		return nil
	})
	close(stopProgress)
	report(workerStatus{Ready: ready.Load(), Failed: b.failed.Load(), Done: true, Secs: time.Since(start).Seconds()})
	_, _ = io.Copy(io.Discard, rd) // hold until the coordinator closes stdin
	b.stopped.Store(true)
	report(workerStatus{Ready: ready.Load(), Failed: b.failed.Load(), Closed: b.closes.Load(), Done: true})
	for _, k := range conns {
		if k != nil {
			_ = k.socket().Close()
		}
	}
	return nil
}

// worker is a running worker process, seen from the coordinator.
type worker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	last  workerStatus
	done  chan struct{} // closed at the first status with Done
	exit  chan error
}

// startWorkers runs ceil(len(tokens)/PerProcess) workers, each with its
// share of the tokens, and waits until all have finished dialling.
func (b *bench) startWorkers(ctx context.Context, tokens []string) ([]*worker, error) {
	per := b.o.PerProcess
	var ws []*worker
	for first := 0; first < len(tokens); first += per {
		share := tokens[first:min(first+per, len(tokens))]
		cmd := b.o.WorkerCommand()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return ws, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return ws, err
		}
		if err := cmd.Start(); err != nil {
			return ws, fmt.Errorf("starting a worker: %w", err)
		}
		w := &worker{cmd: cmd, stdin: stdin, done: make(chan struct{}), exit: make(chan error, 1)}
		ws = append(ws, w)
		go func() {
			sc := bufio.NewScanner(stdout)
			closed := false
			for sc.Scan() {
				var s workerStatus
				if json.Unmarshal(sc.Bytes(), &s) != nil {
					continue
				}
				w.mu.Lock()
				w.last = s
				w.mu.Unlock()
				if s.Done && !closed {
					closed = true
					close(w.done)
				}
			}
			if !closed {
				close(w.done)
			}
			w.exit <- cmd.Wait()
		}()
		job, _ := json.Marshal(workerJob{Server: b.o.Server, WSServers: b.o.WSServers, Tokens: share, First: first, SourceAddrs: b.o.SourceAddrs, DialConc: max(1, b.o.DialConc/2)})
		if _, err := stdin.Write(append(job, '\n')); err != nil {
			return ws, err
		}
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for _, w := range ws {
		for waiting := true; waiting; {
			select {
			case <-w.done:
				waiting = false
			case <-t.C:
				var ready, failed int64
				for _, x := range ws {
					s := x.status()
					ready, failed = ready+s.Ready, failed+s.Failed
				}
				b.o.Progress(fmt.Sprintf("connect: %d/%d ready, %d failed, over %d processes", ready, len(tokens), failed, len(ws)))
			case <-ctx.Done():
				return ws, ctx.Err()
			}
		}
	}
	return ws, nil
}

func (w *worker) status() workerStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// stopWorkers closes the workers' stdin and waits for them.
func stopWorkers(ws []*worker) workerStatus {
	var sum workerStatus
	for _, w := range ws {
		_ = w.stdin.Close()
	}
	for _, w := range ws {
		select {
		case <-w.exit:
		case <-time.After(30 * time.Second):
			_ = w.cmd.Process.Kill()
		}
		s := w.status()
		sum.Ready += s.Ready
		sum.Failed += s.Failed
		sum.Closed += s.Closed
	}
	return sum
}

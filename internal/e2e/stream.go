package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/wstest"
)

// StreamOneOrder has the first senders of conns, members of the group
// conv, each stream each sends into it with up to 8 in flight, while
// every connection reads what it receives. It fails t unless each sender
// gets its acks in the order it sent, every connection gets every
// message once with seqs 1, 2, ... in order, and all of them in the same
// order. Frames of the types in skip are let through; any other frame
// fails. It gives up after two minutes.
func StreamOneOrder(t *testing.T, conns []*wstest.Conn, conv string, senders, each int, skip ...string) {
	t.Helper()
	total := senders * each
	orders := make([][]string, len(conns))
	errs := make(chan error, len(conns))
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sending := i < senders
			sent, acks := 0, 0
			var seqs []int64
			for (sending && acks < each) || len(seqs) < total {
				for sending && sent < each && sent-acks < 8 {
					if err := c.Write(map[string]any{"type": "send", "id": fmt.Sprint(sent), "conversation_id": conv, "client_msg_id": fmt.Sprint(i, "-", sent), "body": "x"}); err != nil {
						errs <- err
						return
					}
					sent++
				}
				if ctx.Err() != nil {
					errs <- fmt.Errorf("connection %d: out of time (acks %d, messages %d)", i, acks, len(seqs))
					return
				}
				f, err := c.Next(20 * time.Second)
				if err != nil {
					errs <- fmt.Errorf("connection %d: %v (acks %d, messages %d)", i, err, acks, len(seqs))
					return
				}
				switch {
				case f.Type == "ack":
					var a struct{ ID string }
					_ = f.Decode(&a)
					if a.ID != fmt.Sprint(acks) {
						errs <- fmt.Errorf("connection %d: ack %d is for send %s", i, acks, a.ID)
						return
					}
					acks++
				case f.Type == "message":
					var m MsgFrame
					_ = f.Decode(&m)
					seqs = append(seqs, m.Message.Seq)
					orders[i] = append(orders[i], m.Message.ClientMsgID)
					if m.Message.Seq != int64(len(seqs)) {
						errs <- fmt.Errorf("connection %d: message %d has seq %d", i, len(seqs), m.Message.Seq)
						return
					}
				case slices.Contains(skip, f.Type):
				default:
					errs <- fmt.Errorf("connection %d: unexpected %s", i, f.Raw)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := 1; i < len(conns); i++ {
		if !slices.Equal(orders[0], orders[i]) {
			t.Fatalf("connection %d saw another order", i)
		}
	}
}

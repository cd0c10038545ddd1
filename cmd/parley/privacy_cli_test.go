package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/parleychat/parley/internal/spawn"
)

// TestPrivacyCommands: the abuse and privacy commands against the real
// server: Mallory's DM reaches Alice as a request; Alice blocks, sets her
// privacy, reports the message and declines; the admin lists the report
// with its content and resolves it, suspending Mallory.
func TestPrivacyCommands(t *testing.T) {
	data := t.TempDir()
	srv, err := spawn.Start(parleydBin, data, []string{"PARLEY_MESSAGE_REQUESTS=on"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Kill)
	root, alice, mallory := newTerm(t, srv.Base), newTerm(t, srv.Base), newTerm(t, srv.Base)
	for tm, h := range map[*term]string{root: "root", alice: "alice", mallory: "mallory"} {
		tm.ok("register", h)
		tm.ok("login", h)
	}
	if out, err := exec.Command(parleydBin, "admin", "grant", "root", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("admin grant: %v\n%s", err, out)
	}
	var sent struct {
		Message struct {
			ConversationID string `json:"conversation_id"`
		}
	}
	mallory.okJSON(&sent, "send", "@alice", "hi, stranger here")
	conv := sent.Message.ConversationID

	var reqs struct{ Requests []struct{ ID string } }
	alice.okJSON(&reqs, "requests")
	if len(reqs.Requests) != 1 || reqs.Requests[0].ID != conv {
		t.Fatalf("requests: %+v, want %s", reqs, conv)
	}
	alice.ok("block", "mallory")
	if out := alice.ok("blocks"); !strings.Contains(out, "\t") {
		t.Fatalf("blocks: %q", out)
	}
	if out := alice.ok("privacy", "--presence", "nobody", "--read-receipts", "contacts"); !strings.Contains(out, "nobody") || !strings.Contains(out, "contacts") {
		t.Fatalf("privacy: %q", out)
	}
	var rep struct {
		ReportID string `json:"report_id"`
	}
	alice.okJSON(&rep, "report", "--conversation", conv, "--seq", "1", "--reason", "spam", "--comment", "unsolicited")
	alice.ok("decline", conv)
	if _, errs, code := alice.run("admin", "reports"); code != 1 || !strings.Contains(errs, "forbidden") {
		t.Fatalf("alice's admin reports: exit %d, %s", code, errs)
	}

	var list struct {
		Reports []struct {
			ID, Content, State string
		}
	}
	root.okJSON(&list, "admin", "reports")
	if len(list.Reports) != 1 || list.Reports[0].ID != rep.ReportID || list.Reports[0].Content != "hi, stranger here" {
		t.Fatalf("admin reports: %+v", list)
	}
	root.ok("admin", "resolve", "--suspend", "--note", "spammer", rep.ReportID)
	root.okJSON(&list, "admin", "reports", "--state", "resolved")
	if len(list.Reports) != 1 || list.Reports[0].State != "resolved" {
		t.Fatalf("resolved reports: %+v", list)
	}
	if _, errs, code := mallory.run("whoami"); code != 1 || !strings.Contains(errs, "unauthorized") && !strings.Contains(errs, "suspended") {
		t.Fatalf("suspended mallory's whoami: exit %d, %s", code, errs)
	}
}

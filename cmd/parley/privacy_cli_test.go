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

// TestReportE2EEMessage: the server holds no plaintext of an end-to-end
// encrypted message, so a report of one reached the admins empty. Now
// parley report (the Go SDK's Report) decrypts the message with the
// reporter's device keys and sends its body: the admins' list shows it
// with content_source "client". A report of a plaintext message still
// carries the server's copy (content_source "server").
func TestReportE2EEMessage(t *testing.T) {
	data := t.TempDir()
	srv, err := spawn.Start(parleydBin, data, nil)
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
	var created struct {
		Conversation struct {
			ID   string
			E2EE bool
		}
	}
	mallory.okJSON(&created, "conversations", "create", "--e2ee", "--direct", "@alice")
	if !created.Conversation.E2EE {
		t.Fatalf("created %+v", created)
	}
	conv := created.Conversation.ID
	mallory.ok("send", conv, "buy cheap watches")
	if out := alice.ok("history", conv); !strings.Contains(out, "buy cheap watches") {
		t.Fatalf("alice's history of the e2ee conversation: %q", out)
	}
	var rep struct {
		ReportID string `json:"report_id"`
	}
	alice.okJSON(&rep, "report", "--conversation", conv, "--seq", "1", "--reason", "spam")

	// A plaintext message, for comparison.
	var sent struct {
		Message struct {
			ConversationID string `json:"conversation_id"`
		}
	}
	mallory.okJSON(&sent, "send", "@root", "plain spam")
	var plain struct {
		ReportID string `json:"report_id"`
	}
	root.okJSON(&plain, "report", "--conversation", sent.Message.ConversationID, "--seq", "1", "--reason", "spam")

	var list struct {
		Reports []struct {
			ID            string
			Content       string
			ContentSource string `json:"content_source"`
		}
	}
	root.okJSON(&list, "admin", "reports")
	got := map[string][2]string{}
	for _, r := range list.Reports {
		got[r.ID] = [2]string{r.Content, r.ContentSource}
	}
	if got[rep.ReportID] != [2]string{"buy cheap watches", "client"} {
		t.Fatalf("the report of the e2ee message: %q; want the decrypted body from the client (all: %+v)", got[rep.ReportID], list)
	}
	if got[plain.ReportID] != [2]string{"plain spam", "server"} {
		t.Fatalf("the report of the plaintext message: %q; want the server's copy (all: %+v)", got[plain.ReportID], list)
	}
}

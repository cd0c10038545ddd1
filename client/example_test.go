package client_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/spawn"
)

// exampleServer starts a parleyd for the examples (TestMain built it).
func exampleServer() (base string, stop func()) {
	dir, err := os.MkdirTemp("", "parley-example")
	if err != nil {
		log.Fatal(err)
	}
	p, err := spawn.Start(parleydBin, dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	return p.Base, func() { p.Kill(); os.RemoveAll(dir) }
}

// Two users chat: Alice sends, Bob's connection hands the message to his
// app and reports it delivered, and Alice sees the receipt.
func Example() {
	server, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	alice := client.New(client.Config{Server: server})
	bob := client.New(client.Config{Server: server})
	for _, u := range []struct {
		c      *client.Client
		handle string
	}{{alice, "alice"}, {bob, "bob"}} {
		if _, err := u.c.Register(ctx, u.handle, "a long enough password", u.handle); err != nil {
			log.Fatal(err)
		}
		if err := u.c.Login(ctx, u.handle, "a long enough password", "laptop"); err != nil {
			log.Fatal(err)
		}
	}
	b, err := alice.FindUser(ctx, "bob")
	if err != nil {
		log.Fatal(err)
	}
	conv, err := alice.CreateDirect(ctx, b.ID)
	if err != nil {
		log.Fatal(err)
	}

	if err := alice.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	if err := bob.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	m, err := alice.Send(ctx, conv.ID, "hello bob")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("acked with seq", m.Seq)

	for ev := range bob.Events() {
		if ev.Kind == client.EventMessage {
			fmt.Printf("bob got %q from seq %d\n", ev.Message.Body, ev.Message.Seq)
			break
		}
	}
	for ev := range alice.Events() {
		if ev.Kind == client.EventReceipt && ev.Receipt.UserID == b.ID && ev.Receipt.Kind == "delivered" {
			fmt.Println("delivered to bob up to seq", ev.Receipt.Seq)
			break
		}
	}
	// Output:
	// acked with seq 1
	// bob got "hello bob" from seq 1
	// delivered to bob up to seq 1
}

// A device saves its tokens and state, and a later run resumes from them:
// it gets what arrived meanwhile and nothing twice.
func ExampleClient_State() {
	server, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	alice := client.New(client.Config{Server: server})
	_, _ = alice.Register(ctx, "alice", "a long enough password", "Alice")
	_ = alice.Login(ctx, "alice", "a long enough password", "phone")
	notes, err := alice.CreateGroup(ctx, "notes")
	if err != nil {
		log.Fatal(err)
	}
	if err := alice.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	_, _ = alice.Send(ctx, notes.ID, "first")
	for ev := range alice.Events() {
		if ev.Kind == client.EventMessage {
			break
		}
	}
	tokens := alice.Tokens()
	state, _ := alice.State(ctx)
	alice.Close()

	// Meanwhile another device of the same user writes.
	other := client.New(client.Config{Server: server})
	_ = other.Login(ctx, "alice", "a long enough password", "laptop")
	_, _ = other.SendREST(ctx, notes.ID, "second")
	_, _ = other.SendREST(ctx, notes.ID, "third")

	resumed := client.New(client.Config{Server: server, Tokens: &tokens, State: &state})
	if err := resumed.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer resumed.Close()
	for ev := range resumed.Events() {
		switch ev.Kind {
		case client.EventMessage:
			fmt.Println(ev.Message.Seq, ev.Message.Body)
		case client.EventSynced:
			return
		}
	}
	// Output:
	// 2 second
	// 3 third
}

// Alice uploads a file (resumable: a dropped connection goes on from the
// server's offset) and sends it; Bob downloads it through the signed link.
func ExampleClient_UploadFile() {
	server, stop := exampleServer()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	login := func(handle string) *client.Client {
		c := client.New(client.Config{Server: server})
		if _, err := c.Register(ctx, handle, "a long enough password", handle); err != nil {
			log.Fatal(err)
		}
		if err := c.Login(ctx, handle, "a long enough password", "example"); err != nil {
			log.Fatal(err)
		}
		return c
	}
	alice, bob := login("alice"), login("bob")
	conv, err := alice.CreateDirect(ctx, bob.Tokens().UserID)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "parley-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(path, []byte("meeting notes\n"), 0o600); err != nil {
		log.Fatal(err)
	}

	res, err := alice.UploadFile(ctx, conv.ID, path, client.UploadOptions{ContentType: "text/plain"})
	if err != nil {
		log.Fatal(err)
	}
	m, err := alice.SendREST(ctx, conv.ID, "the notes", client.WithType(parley.MessageFile), client.WithAttachments(res.MediaID))
	if err != nil {
		log.Fatal(err)
	}
	a := m.Attachments[0]
	fmt.Println("sent:", a.Filename, a.Size, "bytes")

	var buf bytes.Buffer
	if _, _, err := bob.Download(ctx, a.MediaID, client.VariantOriginal, &buf); err != nil {
		log.Fatal(err)
	}
	fmt.Print("bob got: ", buf.String())
	// Output:
	// sent: notes.txt 14 bytes
	// bob got: meeting notes
}

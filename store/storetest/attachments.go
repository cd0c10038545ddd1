package storetest

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// readyMedia stores a ready media record of uploader for c.
func (f *fixture) readyMedia(uploader *parley.User, c *parley.Conversation) *parley.Media {
	f.tb.Helper()
	m := f.media(uploader.ID, c.ID, 100)
	m.State, m.Size, m.SHA256 = parley.MediaReady, 100, strings.Repeat("ab", 32)
	m.Width, m.Height, m.ThumbWidth, m.ThumbHeight = 1024, 768, 320, 240
	if err := f.s.CreateMedia(f.ctx, m); err != nil {
		f.tb.Fatalf("CreateMedia: %v", err)
	}
	return m
}

func attachmentsOf(ms ...*parley.Media) []parley.Attachment {
	out := make([]parley.Attachment, len(ms))
	for i, m := range ms {
		out[i] = parley.AttachmentOf(m)
	}
	return out
}

// testAttachments: a message's attachments read back (history, one
// message, sync, the conversation view), attaching marks the media
// (conversation_seq, no expiry) in the same commit, every reason a media
// cannot be attached fails the append with nothing written, a retry
// returns the original, and a delete or purge drops the attachments.
func testAttachments(t *testing.T, f *fixture) {
	alice, bob := f.user(), f.user()
	c := f.group(alice, bob)
	other := f.group(alice)
	a1, a2 := f.readyMedia(alice, c), f.readyMedia(alice, c)

	m := f.message(c, alice, "look")
	m.Attachments = attachmentsOf(a1, a2)
	got := f.append(m)
	if !reflect.DeepEqual(got.Attachments, m.Attachments) {
		t.Fatalf("appended attachments %+v", got.Attachments)
	}
	for _, id := range []string{a1.ID, a2.ID} {
		md, err := f.s.Media(f.ctx, id)
		if err != nil || md.ConversationSeq != got.Seq || !md.ExpiresAt.IsZero() {
			t.Fatalf("attached media %+v, %v: want conversation_seq %d and no expiry", md, err, got.Seq)
		}
	}
	read, err := f.s.Message(f.ctx, c.ID, got.Seq, f.now)
	if err != nil || !reflect.DeepEqual(read.Attachments, m.Attachments) {
		t.Fatalf("Message attachments %+v, %v", read, err)
	}
	if h := f.history(c.ID); len(h) != 1 || !reflect.DeepEqual(h[0].Attachments, m.Attachments) {
		t.Fatalf("history %+v", h)
	}
	if v := f.view(c.ID, bob); v.LastMessage == nil || !reflect.DeepEqual(v.LastMessage.Attachments, m.Attachments) {
		t.Fatalf("view's last message %+v", v.LastMessage)
	}
	page, err := f.s.Sync(f.ctx, bob.ID, parley.SyncQuery{Conversations: 10, Messages: 10}, f.now)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sc := range page.Conversations {
		for _, sm := range sc.Messages {
			if sm.Seq == got.Seq && sc.View.ID == c.ID {
				found = reflect.DeepEqual(sm.Attachments, m.Attachments)
			}
		}
	}
	if !found {
		t.Fatalf("sync did not carry the attachments: %+v", page.Conversations)
	}

	// A retry of the same client_msg_id is the original, not a refusal
	// of media already attached (to it).
	retry := *m
	retry.ID = parley.NewID()
	if again, created, err := f.s.AppendMessage(f.ctx, &retry); err != nil || created || again.Seq != got.Seq {
		t.Fatalf("retry: %+v created=%v %v", again, created, err)
	}

	bobs := f.readyMedia(bob, c)
	elsewhere := f.readyMedia(alice, other)
	uploading := f.media(alice.ID, c.ID, 10)
	if err := f.s.CreateMedia(f.ctx, uploading); err != nil {
		t.Fatal(err)
	}
	fresh := f.readyMedia(alice, c)
	expired := f.media(alice.ID, c.ID, 10)
	expired.State, expired.ExpiresAt = parley.MediaReady, f.now.Add(-time.Second)
	if err := f.s.CreateMedia(f.ctx, expired); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		media *parley.Media
		want  string
	}{
		{"unknown", &parley.Media{ID: parley.NewID()}, "no such media"},
		{"another user's", bobs, "no such media"},
		{"another conversation's", elsewhere, "another conversation"},
		{"not ready", uploading, "not ready"},
		{"attached already", a1, "already attached"},
		{"expired", expired, "expired"},
	} {
		lastSeq := f.conversation(c.ID).LastSeq
		bad := f.message(c, alice, "bad")
		bad.Attachments = []parley.Attachment{parley.AttachmentOf(fresh), {MediaID: tc.media.ID}}
		_, _, err := f.s.AppendMessage(f.ctx, bad)
		wantCode(t, err, parley.CodeInvalidRequest, tc.name)
		if msg := parley.ErrorMessage(err); !strings.Contains(msg, tc.media.ID) || !strings.Contains(msg, tc.want) {
			t.Fatalf("%s: message %q, want the media id and %q", tc.name, msg, tc.want)
		}
		if f.conversation(c.ID).LastSeq != lastSeq {
			t.Fatalf("%s: a message was written", tc.name)
		}
		if md, _ := f.s.Media(f.ctx, fresh.ID); md.ConversationSeq != 0 {
			t.Fatalf("%s: the good media was attached: %+v", tc.name, md)
		}
	}

	// A delete drops the attachments from the tombstone.
	del, err := f.s.UpdateMessage(f.ctx, c.ID, got.Seq, f.now, func(m *parley.Message) error {
		m.Body, m.Deleted = "", true
		return nil
	})
	if err != nil || del.Attachments != nil {
		t.Fatalf("deleted: %+v, %v", del, err)
	}
	if read, _ := f.s.Message(f.ctx, c.ID, got.Seq, f.now); read.Attachments != nil {
		t.Fatalf("tombstone reads back with attachments %+v", read.Attachments)
	}

	// An expiring message's media are marked deleted, expiring at the
	// purge, when the message is purged.
	ttl := f.message(c, alice, "soon gone")
	ttl.ExpiresAt = f.now.Add(time.Minute)
	ttl.Attachments = attachmentsOf(fresh)
	f.append(ttl)
	purgeAt := f.now.Add(2 * time.Minute)
	if _, err := f.s.PurgeExpired(f.ctx, purgeAt, 100); err != nil {
		t.Fatal(err)
	}
	md, err := f.s.Media(f.ctx, fresh.ID)
	if err != nil || md.State != parley.MediaDeleted || !sameTime(md.ExpiresAt, purgeAt) {
		t.Fatalf("media of a purged message: %+v, %v", md, err)
	}
	// Retention likewise.
	kept := f.readyMedia(alice, c)
	old := f.message(c, alice, "old")
	old.Attachments = attachmentsOf(kept)
	f.append(old)
	cutoff := f.now.Add(time.Second)
	if _, err := f.s.PurgeHistory(f.ctx, cutoff, 100); err != nil {
		t.Fatal(err)
	}
	if md, err := f.s.Media(f.ctx, kept.ID); err != nil || md.State != parley.MediaDeleted || !sameTime(md.ExpiresAt, cutoff) {
		t.Fatalf("media of a message past retention: %+v, %v", md, err)
	}
	// An untouched media stays as it was.
	if md, _ := f.s.Media(f.ctx, bobs.ID); md.State != parley.MediaReady || md.ConversationSeq != 0 {
		t.Fatalf("unrelated media changed: %+v", md)
	}
}

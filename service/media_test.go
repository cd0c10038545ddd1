package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/service"
)

// readyMedia stores a ready media record of uploader for conversationID.
func readyMedia(t *testing.T, st parley.Store, uploaderID, conversationID string) *parley.Media {
	t.Helper()
	m := &parley.Media{ID: parley.NewID(), UploaderID: uploaderID, UploaderDeviceID: "d", ConversationID: conversationID,
		State: parley.MediaReady, ContentType: "image/png", Filename: "a.png", Size: 10, SHA256: strings.Repeat("0", 64),
		Width: 4, Height: 3, ThumbWidth: 4, ThumbHeight: 3, ThumbType: "image/jpeg", Blurhash: "L00000fQfQfQfQfQfQfQfQfQfQfQ",
		DeclaredSize: 10, CreatedAt: time.Now().UTC(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := st.CreateMedia(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSendAttachments: a send names media by id and the message carries
// their attachment objects; a caption may be empty; more than ten, a
// repeated id or a bad id are refused before anything is read; a
// non-member, a removed member or an unknown id gets not_found for links
// while a member and the uploader do; deleting the message marks the
// media deleted until the longest link has expired.
func TestSendAttachments(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	svc := newService(st, service.Config{MediaLinkLifetime: 90 * time.Minute, Now: func() time.Time { return now }})
	alice, bob, carol := createUser(t, st, "alice"), createUser(t, st, "bob"), createUser(t, st, "carol")
	c := createGroup(t, st, now, alice, bob)
	pa, pb, pc := &parley.Principal{UserID: alice.ID, DeviceID: "a"}, &parley.Principal{UserID: bob.ID, DeviceID: "b"}, &parley.Principal{UserID: carol.ID, DeviceID: "c"}
	m1, m2 := readyMedia(t, st, alice.ID, c.ID), readyMedia(t, st, alice.ID, c.ID)

	// Before sending: the uploader may see it, bob may not (not attached).
	if _, err := svc.MediaForMember(ctx, pa, m1.ID); err != nil {
		t.Fatalf("uploader before sending: %v", err)
	}
	if _, err := svc.MediaForMember(ctx, pb, m1.ID); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("member before it is sent: %v, want not_found", err)
	}

	refs := []parley.AttachmentRef{{MediaID: m1.ID}, {MediaID: m2.ID}}
	msg, _, err := svc.Send(ctx, pa, service.SendRequest{ConversationID: c.ID, ClientMsgID: "c1", Type: parley.MessageImage, Attachments: refs})
	if err != nil {
		t.Fatal(err)
	}
	if len(msg.Attachments) != 2 || msg.Attachments[0].MediaID != m1.ID || msg.Attachments[0].Filename != "a.png" ||
		msg.Attachments[1].MediaID != m2.ID || msg.Attachments[0].Thumbnail == nil || msg.Attachments[0].Blurhash == "" || msg.Body != "" {
		t.Fatalf("message %+v", msg)
	}

	tooMany := make([]parley.AttachmentRef, 11)
	for i := range tooMany {
		tooMany[i].MediaID = parley.NewID()
	}
	for name, req := range map[string]service.SendRequest{
		"eleven":    {Attachments: tooMany},
		"twice":     {Attachments: []parley.AttachmentRef{{MediaID: m1.ID}, {MediaID: m1.ID}}},
		"bad id":    {Attachments: []parley.AttachmentRef{{MediaID: "../x"}}},
		"no body":   {},
		"attached":  {Attachments: []parley.AttachmentRef{{MediaID: m1.ID}}},
		"not yours": {Attachments: []parley.AttachmentRef{{MediaID: readyMedia(t, st, bob.ID, c.ID).ID}}},
	} {
		req.ConversationID, req.ClientMsgID = c.ID, "bad-"+strings.ReplaceAll(name, " ", "-")
		if _, _, err := svc.Send(ctx, pa, req); parley.ErrorCode(err) != parley.CodeInvalidRequest {
			t.Errorf("%s: %v, want invalid_request", name, err)
		}
	}

	// Links: members yes, others not_found alike.
	if _, err := svc.MediaForMember(ctx, pb, m1.ID); err != nil {
		t.Fatalf("member: %v", err)
	}
	for name, id := range map[string]string{"non-member": m1.ID, "unknown": parley.NewID(), "not an id": "x"} {
		if _, err := svc.MediaForMember(ctx, pc, id); parley.ErrorCode(err) != parley.CodeNotFound {
			t.Errorf("%s: %v, want not_found", name, err)
		}
	}
	if err := svc.RemoveMember(ctx, pa, c.ID, bob.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.MediaForMember(ctx, pb, m1.ID); parley.ErrorCode(err) != parley.CodeNotFound {
		t.Fatalf("removed member: %v, want not_found", err)
	}

	// Delete: the media are deleted, kept until the links expire.
	if _, err := svc.DeleteMessage(ctx, pa, c.ID, msg.Seq); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{m1.ID, m2.ID} {
		md, err := st.Media(ctx, id)
		if err != nil || md.State != parley.MediaDeleted || !md.ExpiresAt.Equal(now.Add(90*time.Minute)) {
			t.Fatalf("media of the deleted message: %+v, %v", md, err)
		}
		if _, err := svc.MediaForLink(ctx, id); parley.ErrorCode(err) != parley.CodeNotFound {
			t.Fatalf("link to deleted media: %v", err)
		}
	}
	got, _, err := svc.Message(ctx, pa, c.ID, msg.Seq)
	if err != nil || got.Attachments != nil {
		t.Fatalf("tombstone %+v, %v", got, err)
	}
}

package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/parleychat/parley"
)

// media returns a new uploading media record of uploader in conversationID
// created at f.now, expiring a day later; not yet stored.
func (f *fixture) media(uploaderID, conversationID string, declared int64) *parley.Media {
	return &parley.Media{
		ID: parley.NewID(), UploaderID: uploaderID, UploaderDeviceID: parley.NewID(), ConversationID: conversationID,
		State: parley.MediaUploading, Filename: "beach \u00e9t\u00e9.jpg", ContentType: "image/jpeg",
		DeclaredSize: declared, CreatedAt: f.now, ExpiresAt: f.now.Add(24 * time.Hour),
	}
}

// testMedia: a media record reads back as created (filename included),
// updates atomically with every mutable field, refuses a duplicate id and
// deletes.
func testMedia(t *testing.T, f *fixture) {
	u := f.user()
	m := f.media(u.ID, parley.NewID(), 1000)
	if err := f.s.CreateMedia(f.ctx, m); err != nil {
		t.Fatalf("CreateMedia: %v", err)
	}
	got, err := f.s.Media(f.ctx, m.ID)
	if err != nil || got.Filename != m.Filename || got.State != parley.MediaUploading || got.UploaderID != u.ID ||
		got.UploaderDeviceID != m.UploaderDeviceID || got.ConversationID != m.ConversationID || got.DeclaredSize != 1000 ||
		got.ContentType != "image/jpeg" || !sameTime(got.CreatedAt, f.now) || !sameTime(got.ExpiresAt, m.ExpiresAt) || got.Encrypted {
		t.Fatalf("Media = %+v, %v; want %+v", got, err, m)
	}
	wantCode(t, f.s.CreateMedia(f.ctx, f.media(u.ID, m.ConversationID, 1)), "", "a second media")
	dup := f.media(u.ID, m.ConversationID, 5)
	dup.ID = m.ID
	wantCode(t, f.s.CreateMedia(f.ctx, dup), parley.CodeConflict, "a duplicate media id")

	up, err := f.s.UpdateMedia(f.ctx, m.ID, func(m *parley.Media) error {
		m.State = parley.MediaReady
		m.ContentType = "image/png"
		m.Filename = ""
		m.Size, m.SHA256 = 900, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
		m.Width, m.Height, m.DurationMS = 1024, 768, 0
		m.ThumbWidth, m.ThumbHeight, m.ThumbType = 320, 240, "image/jpeg"
		m.Blurhash = "LEHV6nWB2yk8pyo0adR*.7kCMdnj"
		m.ExpiresAt = time.Time{}
		m.ConversationSeq = 42
		m.TusID = m.ID + "+multipart"
		m.DeclaredSize = 1 // not stored
		return nil
	})
	if err != nil || up.State != parley.MediaReady || up.Filename != "" || up.Size != 900 || up.Width != 1024 || up.Height != 768 ||
		up.ThumbWidth != 320 || up.ThumbHeight != 240 || up.ThumbType != "image/jpeg" || up.Blurhash == "" || !up.ExpiresAt.IsZero() ||
		up.ConversationSeq != 42 || up.TusID != m.ID+"+multipart" || up.DeclaredSize != 1000 || up.ContentType != "image/png" || up.SHA256 == "" {
		t.Fatalf("UpdateMedia = %+v, %v", up, err)
	}
	if again, err := f.s.Media(f.ctx, m.ID); err != nil || *again != *up {
		t.Fatalf("Media after update = %+v, %v; want %+v", again, err, up)
	}
	boom := errors.New("boom")
	if _, err := f.s.UpdateMedia(f.ctx, m.ID, func(m *parley.Media) error { m.State = parley.MediaFailed; return boom }); !errors.Is(err, boom) {
		t.Fatalf("UpdateMedia with a failing change = %v", err)
	}
	if again, _ := f.s.Media(f.ctx, m.ID); again.State != parley.MediaReady {
		t.Fatalf("a failed change was written: %+v", again)
	}
	_, err = f.s.UpdateMedia(f.ctx, parley.NewID(), func(*parley.Media) error { return nil })
	wantCode(t, err, parley.CodeNotFound, "updating no media")

	// Encrypted and the filename set by an update.
	e := f.media(u.ID, m.ConversationID, 7)
	e.Encrypted, e.Filename = true, ""
	if err := f.s.CreateMedia(f.ctx, e); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.UpdateMedia(f.ctx, e.ID, func(m *parley.Media) error { m.Filename = "late.bin"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := f.s.Media(f.ctx, e.ID); err != nil || !got.Encrypted || got.Filename != "late.bin" {
		t.Fatalf("encrypted media = %+v, %v", got, err)
	}

	if err := f.s.DeleteMedia(f.ctx, m.ID); err != nil {
		t.Fatalf("DeleteMedia: %v", err)
	}
	_, err = f.s.Media(f.ctx, m.ID)
	wantCode(t, err, parley.CodeNotFound, "a deleted media")
	wantCode(t, f.s.DeleteMedia(f.ctx, m.ID), parley.CodeNotFound, "deleting it again")
}

// testMediaUsage: created counts every upload since the time given by its
// declared size; stored counts ready media by size and unfinished ones by
// declared size, nothing for failed or deleted, and only the user's.
func testMediaUsage(t *testing.T, f *fixture) {
	u, other := f.user(), f.user()
	conv := parley.NewID()
	if c, s, err := f.s.MediaUsage(f.ctx, u.ID, f.now.Add(-24*time.Hour)); err != nil || c != 0 || s != 0 {
		t.Fatalf("usage of none = %d, %d, %v", c, s, err)
	}
	old := f.media(u.ID, conv, 5000) // two days ago, ready, 4000 bytes stored
	old.CreatedAt = f.now.Add(-48 * time.Hour)
	old.State, old.Size = parley.MediaReady, 4000
	uploading := f.media(u.ID, conv, 300)
	ready := f.media(u.ID, conv, 200)
	ready.State, ready.Size = parley.MediaReady, 150
	failed := f.media(u.ID, conv, 70)
	failed.State = parley.MediaFailed
	deleted := f.media(u.ID, conv, 11)
	deleted.State = parley.MediaDeleted
	processing := f.media(u.ID, conv, 1)
	processing.State = parley.MediaProcessing
	theirs := f.media(other.ID, conv, 1<<20)
	for _, m := range []*parley.Media{old, uploading, ready, failed, deleted, processing, theirs} {
		if err := f.s.CreateMedia(f.ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	c, s, err := f.s.MediaUsage(f.ctx, u.ID, f.now.Add(-24*time.Hour))
	if err != nil || c != 300+200+70+11+1 || s != 4000+300+150+1 {
		t.Fatalf("MediaUsage = created %d, stored %d, %v; want 582, 4451", c, s, err)
	}
	if c, _, _ := f.s.MediaUsage(f.ctx, u.ID, f.now.Add(time.Millisecond)); c != 0 {
		t.Fatalf("created after now = %d", c)
	}
}

// testExpiredMedia: only media with an expiry at or before now are listed,
// earliest first, at most limit; the limit is bounded.
func testExpiredMedia(t *testing.T, f *fixture) {
	u := f.user()
	conv := parley.NewID()
	var ms []*parley.Media
	for i, exp := range []time.Duration{-time.Hour, -2 * time.Hour, 0, time.Hour} {
		m := f.media(u.ID, conv, int64(i))
		m.ExpiresAt = f.now.Add(exp)
		ms = append(ms, m)
	}
	kept := f.media(u.ID, conv, 9)
	kept.ExpiresAt = time.Time{} // referenced by a message
	for _, m := range append(ms, kept) {
		if err := f.s.CreateMedia(f.ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	got, err := f.s.ExpiredMedia(f.ctx, f.now, 10)
	if err != nil || len(got) != 3 || got[0].ID != ms[1].ID || got[1].ID != ms[0].ID || got[2].ID != ms[2].ID || got[0].Filename != ms[1].Filename {
		t.Fatalf("ExpiredMedia = %+v, %v", got, err)
	}
	if got, err := f.s.ExpiredMedia(f.ctx, f.now, 1); err != nil || len(got) != 1 || got[0].ID != ms[1].ID {
		t.Fatalf("ExpiredMedia limit 1 = %+v, %v", got, err)
	}
	_, err = f.s.ExpiredMedia(f.ctx, f.now, 0)
	wantCode(t, err, parley.CodeInvalidRequest, "a limit of 0")
	_, err = f.s.ExpiredMedia(f.ctx, f.now, parley.MaxExpiredMedia+1)
	wantCode(t, err, parley.CodeInvalidRequest, "a limit too high")
}

package upload

import (
	"context"
	"errors"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/parleychat/parley"
)

// Collect deletes up to limit media records that expired at now (unfinished
// uploads, and finished ones no message references), with their blobs and
// tus data, and returns how many it deleted. An upload a request holds
// (its lock is taken) is left for the next pass.
func (u *Uploads) Collect(ctx context.Context, now time.Time, limit int) (int, error) {
	expired, err := u.cfg.Store.ExpiredMedia(ctx, now, min(limit, parley.MaxExpiredMedia))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range expired {
		if err := u.collect(ctx, &m); err != nil {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			u.cfg.Log.WarnContext(ctx, "media not collected", "media_id", m.ID, "err", err)
			continue
		}
		n++
	}
	return n, nil
}

// collect deletes one expired media: tus data, blobs, then the record.
func (u *Uploads) collect(ctx context.Context, m *parley.Media) error {
	lock, err := u.cfg.Locker.NewLock(tusID(m))
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	err = lock.Lock(lctx, func() {})
	cancel()
	if err != nil {
		return err
	}
	defer lock.Unlock()
	if up, err := u.composer.Core.GetUpload(ctx, tusID(m)); err == nil {
		if err := u.terminate(ctx, up); err != nil && !errors.Is(err, handler.ErrNotFound) {
			return err
		}
	} else if !errors.Is(err, handler.ErrNotFound) {
		return err
	}
	for _, key := range []string{parley.MediaOriginalKey(m.ID), parley.MediaThumbnailKey(m.ID)} {
		if err := u.cfg.Blobs.Delete(ctx, key); err != nil {
			return err
		}
	}
	if err := u.cfg.Store.DeleteMedia(ctx, m.ID); err != nil && parley.ErrorCode(err) != parley.CodeNotFound {
		return err
	}
	return nil
}

// Run collects expired media every interval (at most a minute, and at
// most a quarter of the expiry) until ctx ends. Every node may run it:
// deletes are idempotent.
func (u *Uploads) Run(ctx context.Context) error {
	every := min(time.Minute, u.cfg.Expiry/4)
	if every < 100*time.Millisecond {
		every = 100 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for {
			n, err := u.Collect(ctx, u.cfg.Now(), 100)
			if err != nil && ctx.Err() == nil {
				u.cfg.Log.WarnContext(ctx, "media collection failed", "err", err)
			}
			if n < 100 || err != nil {
				break
			}
		}
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	"github.com/tus/tusd/v2/pkg/s3store"

	"github.com/parleychat/parley/blob/s3blob"
	"github.com/parleychat/parley/media/process"
	"github.com/parleychat/parley/media/upload"
)

// openUploads builds the tus upload service of a node: tus data in
// <data>/uploads with an in-process lock (embedded), or in the media
// bucket under uploads/ with PostgreSQL advisory locks (cluster), so an
// upload can resume through any node. The returned func releases it.
func openUploads(ctx context.Context, n *node) (*upload.Uploads, func(), error) {
	cfg := n.cfg
	tmp := filepath.Join(cfg.Data, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, nil, err
	}
	var tusStore interface{ UseIn(*handler.StoreComposer) }
	if s3, ok := n.media.(*s3blob.Store); ok {
		st := s3store.New(s3.Bucket(), s3.Client())
		st.ObjectPrefix = s3.Prefix() + "uploads/"
		tusStore = st
	} else {
		dir := filepath.Join(cfg.Data, "uploads")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, nil, err
		}
		tusStore = filestore.New(dir)
	}
	var locker handler.Locker = memorylocker.New()
	closeLocker := func() {}
	if cfg.Store != "" {
		pcfg, err := pgxpool.ParseConfig(cfg.Store)
		if err != nil {
			return nil, nil, fmt.Errorf("upload locks: %w", err)
		}
		pcfg.MaxConns = 32
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			return nil, nil, fmt.Errorf("upload locks: %w", err)
		}
		locker, closeLocker = upload.NewPGLocker(pool), pool.Close
	}
	u, err := upload.New(upload.Config{
		Store: n.store, Blobs: n.media, TusStore: tusStore, Locker: locker,
		MaxUploadBytes: cfg.MaxUploadBytes, QuotaDaily: cfg.UploadQuotaDaily, QuotaStored: cfg.UploadQuotaStore,
		Expiry: cfg.UploadExpiry, Process: process.Limits{TempDir: tmp}, Log: n.log.With("component", "uploads"),
	})
	if err != nil {
		closeLocker()
		return nil, nil, err
	}
	return u, closeLocker, nil
}

package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/store/internal/engine"
)

const mediaColumns = `id, uploader_id, uploader_device_id, conversation_id, state, encrypted, content_type,
	filename, filename_key, size, sha256, width, height, duration_ms, thumb_width, thumb_height, thumb_type,
	blurhash, fail_reason, declared_size, created_at, expires_at, conversation_seq, tus_id`

// mediaAD binds a media's sealed filename to the media.
func mediaAD(id string) []byte { return []byte("media:" + id) }

// sealFilename seals a media's filename; an empty one stays empty.
func (s *Store) sealFilename(m *parley.Media) ([]byte, int64, error) {
	if m.Filename == "" {
		return []byte{}, 0, nil
	}
	key, sealed, err := s.sealer.Seal([]byte(m.Filename), mediaAD(m.ID))
	if err != nil {
		return nil, 0, s.internal("seal media filename", err)
	}
	return sealed, int64(key), nil
}

// CreateMedia implements parley.Store.
func (s *Store) CreateMedia(ctx context.Context, m *parley.Media) error {
	defer s.track("create_media", time.Now())
	name, key, err := s.sealFilename(m)
	if err != nil {
		return err
	}
	m.CreatedAt = engine.NormalTime(m.CreatedAt)
	m.ExpiresAt = engine.NormalTime(m.ExpiresAt)
	return s.write(ctx, true, func(t *txn) error {
		_, err := t.exec(`INSERT INTO media (`+mediaColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
			$11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)`,
			m.ID, m.UploaderID, m.UploaderDeviceID, m.ConversationID, string(m.State), m.Encrypted, m.ContentType,
			name, key, m.Size, m.SHA256, m.Width, m.Height, m.DurationMS, m.ThumbWidth, m.ThumbHeight, m.ThumbType,
			m.Blurhash, m.FailReason, m.DeclaredSize, engine.Millis(m.CreatedAt), nullMillis(m.ExpiresAt), m.ConversationSeq, m.TusID)
		if isUniqueViolation(err) {
			return parley.Errorf(parley.CodeConflict, "media %s exists", m.ID)
		}
		if err != nil {
			return s.internal("create media", err)
		}
		return nil
	})
}

// scanMedia reads a row of mediaColumns and opens its filename.
func (s *Store) scanMedia(row interface{ Scan(...any) error }) (parley.Media, error) {
	var m parley.Media
	var name []byte
	var key, created int64
	var expires *int64
	err := row.Scan(&m.ID, &m.UploaderID, &m.UploaderDeviceID, &m.ConversationID, &m.State, &m.Encrypted, &m.ContentType,
		&name, &key, &m.Size, &m.SHA256, &m.Width, &m.Height, &m.DurationMS, &m.ThumbWidth, &m.ThumbHeight, &m.ThumbType,
		&m.Blurhash, &m.FailReason, &m.DeclaredSize, &created, &expires, &m.ConversationSeq, &m.TusID)
	if err != nil {
		return m, err
	}
	m.CreatedAt = engine.FromMillis(created)
	m.ExpiresAt = fromNullMillis(expires)
	if len(name) > 0 {
		plain, err := s.sealer.Open(uint32(key), name, mediaAD(m.ID))
		if err != nil {
			return m, s.internal("open media filename", err)
		}
		m.Filename = string(plain)
	}
	return m, nil
}

// Media implements parley.Store.
func (s *Store) Media(ctx context.Context, id string) (*parley.Media, error) {
	defer s.track("media", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	m, err := s.scanMedia(s.pool.QueryRow(ctx, `SELECT `+mediaColumns+` FROM media WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, parley.Errorf(parley.CodeNotFound, "no such media")
	}
	if err != nil {
		return nil, s.internal("read media", err)
	}
	return &m, nil
}

// UpdateMedia implements parley.Store.
func (s *Store) UpdateMedia(ctx context.Context, id string, change func(m *parley.Media) error) (*parley.Media, error) {
	defer s.track("update_media", time.Now())
	var out parley.Media
	err := s.write(ctx, true, func(t *txn) error {
		m, err := s.scanMedia(t.queryRow(`SELECT `+mediaColumns+` FROM media WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return parley.Errorf(parley.CodeNotFound, "no such media")
		}
		if err != nil {
			return s.internal("read media", err)
		}
		if err := change(&m); err != nil {
			return err
		}
		m.ID = id
		m.ExpiresAt = engine.NormalTime(m.ExpiresAt)
		name, key, err := s.sealFilename(&m)
		if err != nil {
			return err
		}
		_, err = t.exec(`UPDATE media SET state = $2, encrypted = $3, content_type = $4, filename = $5, filename_key = $6,
			size = $7, sha256 = $8, width = $9, height = $10, duration_ms = $11, thumb_width = $12, thumb_height = $13,
			thumb_type = $14, blurhash = $15, fail_reason = $16, expires_at = $17, conversation_seq = $18, tus_id = $19 WHERE id = $1`,
			id, string(m.State), m.Encrypted, m.ContentType, name, key, m.Size, m.SHA256, m.Width, m.Height, m.DurationMS,
			m.ThumbWidth, m.ThumbHeight, m.ThumbType, m.Blurhash, m.FailReason, nullMillis(m.ExpiresAt), m.ConversationSeq, m.TusID)
		if err != nil {
			return s.internal("update media", err)
		}
		out, err = s.scanMedia(t.queryRow(`SELECT `+mediaColumns+` FROM media WHERE id = $1`, id))
		if err != nil {
			return s.internal("read media", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// MediaUsage implements parley.Store.
func (s *Store) MediaUsage(ctx context.Context, userID string, since time.Time) (created, stored int64, err error) {
	defer s.track("media_usage", time.Now())
	if s.closed.Load() {
		return 0, 0, errClosed
	}
	err = s.pool.QueryRow(ctx, `SELECT
			COALESCE(SUM(CASE WHEN created_at >= $2 THEN declared_size ELSE 0 END), 0)::bigint,
			COALESCE(SUM(CASE WHEN state = 'ready' THEN size WHEN state IN ('uploading', 'processing') THEN declared_size ELSE 0 END), 0)::bigint
		FROM media WHERE uploader_id = $1`, userID, engine.Millis(since)).Scan(&created, &stored)
	if err != nil {
		return 0, 0, s.internal("read media usage", err)
	}
	return created, stored, nil
}

// ExpiredMedia implements parley.Store.
func (s *Store) ExpiredMedia(ctx context.Context, now time.Time, limit int) ([]parley.Media, error) {
	defer s.track("expired_media", time.Now())
	if s.closed.Load() {
		return nil, errClosed
	}
	if limit < 1 || limit > parley.MaxExpiredMedia {
		return nil, parley.Errorf(parley.CodeInvalidRequest, "limit must be 1 to %d", parley.MaxExpiredMedia)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+mediaColumns+` FROM media
		WHERE expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2`, engine.Millis(now), limit)
	if err != nil {
		return nil, s.internal("read expired media", err)
	}
	defer rows.Close()
	out := []parley.Media{}
	for rows.Next() {
		m, err := s.scanMedia(rows)
		if err != nil {
			return nil, s.internal("read expired media", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.internal("read expired media", err)
	}
	return out, nil
}

// DeleteMedia implements parley.Store.
func (s *Store) DeleteMedia(ctx context.Context, id string) error {
	defer s.track("delete_media", time.Now())
	return s.write(ctx, true, func(t *txn) error {
		n, err := t.exec(`DELETE FROM media WHERE id = $1`, id)
		if err != nil {
			return s.internal("delete media", err)
		}
		if n == 0 {
			return parley.Errorf(parley.CodeNotFound, "no such media")
		}
		return nil
	})
}

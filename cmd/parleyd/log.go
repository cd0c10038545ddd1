package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	nbiologging "github.com/lesismal/nbio/logging"

	"github.com/parleychat/parley"
)

// newLogger returns a JSON logger at level whose records carry the request
// id of their context.
func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(requestIDHandler{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})})
}

// requestIDHandler adds request_id to every record logged with a context
// that has one.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := parley.RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// nbioLogger routes the nbio engine's log lines (it has one package-level
// logger, which otherwise prints "[INF] NBIO Engine..." lines to stdout)
// into the server's JSON log.
type nbioLogger struct{ log *slog.Logger }

func (l nbioLogger) Debug(format string, v ...any) { l.at(slog.LevelDebug, format, v) }
func (l nbioLogger) Info(format string, v ...any)  { l.at(slog.LevelInfo, format, v) }
func (l nbioLogger) Warn(format string, v ...any)  { l.at(slog.LevelWarn, format, v) }
func (l nbioLogger) Error(format string, v ...any) { l.at(slog.LevelError, format, v) }

func (l nbioLogger) at(level slog.Level, format string, v []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, v...))
	}
}

// routeLibraryLogs sends what libraries log through their own global
// loggers to log: nbio's logger and the standard library's log package
// (used by dependencies that have no logger option). Process-wide: call it
// once, from serve.
func routeLibraryLogs(log *slog.Logger) {
	nbiologging.SetLogger(nbioLogger{log.With("component", "nbio")})
	slog.SetDefault(log)
}

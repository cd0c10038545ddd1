package parley

import "context"

type requestIDKey struct{}

// WithRequestID returns ctx carrying a request id, so that every log line
// written while serving the request can name it.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey{}, id)
}

// RequestID returns the request id in ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

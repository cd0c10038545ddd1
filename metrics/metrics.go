// Package metrics defines Parley's Prometheus collectors. They are created on
// a Registerer passed in by cmd/parleyd (never the global default registry)
// and handed to the parts that record them.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds every collector. A nil *Metrics is valid and records
// nothing, so tests and tools can pass nil. Safe for concurrent use.
type Metrics struct {
	httpRequests   *prometheus.CounterVec
	httpDuration   *prometheus.HistogramVec
	storeDuration  *prometheus.HistogramVec
	messagesStored prometheus.Counter
	rateLimited    *prometheus.CounterVec
	purged         prometheus.Counter
	purgedHistory  prometheus.Counter
	mediaRequests  *prometheus.CounterVec
	mediaBytes     *prometheus.CounterVec
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_store_operation_duration_seconds",
			Help:    "Store operation latency by operation; writes include waiting for the group commit.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"op"}),
		messagesStored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_messages_stored_total",
			Help: "Messages committed to the store (replays of an idempotent send not counted).",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_rate_limited_total",
			Help: "Requests refused by a rate limit, by limit name.",
		}, []string{"limit"}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_messages_purged_total",
			Help: "Expired messages deleted by the background purge.",
		}),
		purgedHistory: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_messages_retention_purged_total",
			Help: "Messages older than the retention deleted by the background purge.",
		}),
		mediaRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_media_requests_total",
			Help: "Signed media downloads (GET /m/...) by variant and outcome: ok (200 or 206), not_modified, forbidden (tampered or expired link), not_found.",
		}, []string{"variant", "outcome"}),
		mediaBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_media_bytes_served_total",
			Help: "Bytes of media content written by signed downloads, by variant (what a CDN in front saves shows here).",
		}, []string{"variant"}),
	}
	reg.MustRegister(m.httpRequests, m.httpDuration, m.storeDuration, m.messagesStored, m.rateLimited, m.purged, m.purgedHistory,
		m.mediaRequests, m.mediaBytes)
	return m
}

// ObserveHTTP records one finished HTTP request. route is the matched
// pattern (never the raw path, which would explode the label set).
func (m *Metrics) ObserveHTTP(route, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	method = knownMethod(method)
	m.httpRequests.WithLabelValues(route, method, statusText(status)).Inc()
	m.httpDuration.WithLabelValues(route, method).Observe(d.Seconds())
}

// ObserveStore records the latency of one store operation.
func (m *Metrics) ObserveStore(op string, d time.Duration) {
	if m == nil {
		return
	}
	m.storeDuration.WithLabelValues(op).Observe(d.Seconds())
}

// MessageStored counts one newly committed message.
func (m *Metrics) MessageStored() {
	if m == nil {
		return
	}
	m.messagesStored.Inc()
}

// RateLimited counts one request refused by the named limit.
func (m *Metrics) RateLimited(limit string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(limit).Inc()
}

// Purged counts n expired messages deleted.
func (m *Metrics) Purged(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.purged.Add(float64(n))
}

// PurgedHistory counts n messages deleted for being older than the
// retention.
func (m *Metrics) PurgedHistory(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.purgedHistory.Add(float64(n))
}

// knownMethod keeps the method label bounded: clients choose the method,
// and every new label value is a new time series.
func knownMethod(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return m
	}
	return "other"
}

func statusText(code int) string {
	// Status codes are few; formatting them by hand avoids strconv on the hot path.
	if code < 100 || code > 999 {
		return "other"
	}
	return string([]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)})
}

// MediaServed counts one signed media download of variant (original or
// thumbnail; anything else is counted as "other") with its outcome and
// the content bytes written.
func (m *Metrics) MediaServed(variant, outcome string, bytes int64) {
	if m == nil {
		return
	}
	if variant != "original" && variant != "thumbnail" {
		variant = "other"
	}
	m.mediaRequests.WithLabelValues(variant, outcome).Inc()
	if bytes > 0 {
		m.mediaBytes.WithLabelValues(variant).Add(float64(bytes))
	}
}

package push

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the notification service's Prometheus metrics. Queue depth
// and age are gauges the caller registers from Queue.Depth.
type Metrics struct {
	enqueued *prometheus.CounterVec   // by kind: message, read, device
	sent     *prometheus.CounterVec   // by provider, kind
	failed   *prometheus.CounterVec   // by provider, reason
	skipped  *prometheus.CounterVec   // by reason
	dead     *prometheus.CounterVec   // by provider
	dropped  *prometheus.CounterVec   // by reason
	deferred *prometheus.CounterVec   // by reason: host_busy, user_busy
	latency  *prometheus.HistogramVec // by provider: commit to provider acceptance
	// jobErrors counts jobs put back after a store or NATS failure;
	// traceFailures trace writes that failed (traces are best effort).
	jobErrors     prometheus.Counter
	traceFailures prometheus.Counter
	// avoided counts messages the view found no job was needed for;
	// revisited those judged so and enqueued after all (a registration
	// or membership change came after the judgement).
	avoided   prometheus.Counter
	revisited prometheus.Counter
	viewUsers prometheus.Gauge
	viewReady prometheus.Gauge
}

// NewMetrics makes the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_push_jobs_enqueued_total",
			Help: "Push jobs put on the work queue, by kind (message, read, device)."}, []string{"kind"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_push_sent_total",
			Help: "Notifications a provider accepted, by provider and kind (message, read)."}, []string{"provider", "kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_push_failed_total",
			Help: "Failed sends, by provider and reason (unregistered, retry, rejected, not_configured, endpoint_dropped)."}, []string{"provider", "reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_push_skipped_total",
			Help: "Device notifications not sent, by reason (delivered, read, muted, dnd, collapsed, no_unread, gone, endpoint_backoff)."}, []string{"reason"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_push_deferred_total",
			Help: "Device jobs put back for a moment because their endpoint host or user had the most sends in flight allowed (host_busy, user_busy)."}, []string{"reason"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_push_dead_letter_total",
			Help: "Jobs moved to the dead-letter stream after their last attempt, by provider."}, []string{"provider"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_push_dropped_total",
			Help: "Jobs dropped, by reason (ttl, undecodable, enqueue_overflow, enqueue_failed)."}, []string{"reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "parley_push_latency_seconds",
			Help:    "From a message's commit to the provider accepting its notification, by provider.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300, 3600}}, []string{"provider"}),
		jobErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_push_job_errors_total",
			Help: "Jobs put back for a later try after a store or NATS failure."}),
		traceFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_push_trace_failures_total",
			Help: "Trace writes that failed (traces are best effort)."}),
		avoided: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_push_jobs_avoided_total",
			Help: "Committed messages that got no push job: no other member of the conversation has a push registration (this node's view)."}),
		revisited: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_push_jobs_revisited_total",
			Help: "Messages first judged to need no push job and enqueued after all: a registration or membership change (or a gap in the bus) came right after."}),
		viewUsers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_push_view_users",
			Help: "Users with a push registration in this node's view."}),
		viewReady: prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_push_view_ready",
			Help: "1 when this node's view of push registrations is loaded and current (messages without registered recipients get no job), 0 when every message is enqueued (loading, or after a gap in the bus)."}),
	}
	if reg != nil {
		reg.MustRegister(m.enqueued, m.sent, m.failed, m.skipped, m.dead, m.dropped, m.deferred, m.latency, m.jobErrors, m.traceFailures,
			m.avoided, m.revisited, m.viewUsers, m.viewReady)
	}
	return m
}

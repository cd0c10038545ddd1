package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WS holds the WebSocket gateway's collectors. A nil *WS records nothing.
type WS struct {
	frames   *prometheus.CounterVec
	closes   *prometheus.CounterVec
	gapFills prometheus.Counter
	lag      prometheus.Gauge
	held     prometheus.Counter
	heldSecs prometheus.Counter
}

// wsFrameTypes bounds the type label: clients choose the type.
var wsFrameTypes = map[string]bool{"send": true, "delivered": true, "read": true, "typing": true, "sync": true, "history": true, "ping": true, "auth": true}

// NewWS creates the gateway's collectors on reg; sessions reports the
// number of live connections.
func NewWS(reg prometheus.Registerer, sessions func() float64) *WS {
	m := &WS{
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_ws_frames_received_total",
			Help: "Client WebSocket frames by type (invalid: undecodable or unknown).",
		}, []string{"type"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_ws_server_closes_total",
			Help: "Connections the server closed or refused, by reason (token_expired, revoked, shutdown, protocol, slow_consumer, idle, replaced, too_many_connections).",
		}, []string{"reason"}),
		gapFills: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_live_gap_fills_total",
			Help: "Gaps in live delivery (a message event lost or late on the bus) filled from the store.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "parley_ws_delivery_lag_seconds",
			Help: "The delivery backlog: how long the live event last handled waited in this node's bus queue, or the expected wait of those queued behind it if longer (sends are held above --delivery-lag-bound).",
		}),
		held: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_ws_sends_held_total",
			Help: "Send frames held (not yet committed or acked) because live delivery was behind.",
		}),
		heldSecs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_ws_send_hold_seconds_total",
			Help: "Time connections spent holding sends because live delivery was behind.",
		}),
	}
	reg.MustRegister(m.frames, m.closes, m.gapFills, m.lag, m.held, m.heldSecs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_ws_connections",
		Help: "Live WebSocket connections on this node.",
	}, sessions))
	return m
}

// Frame counts one client frame; typ is "" for an undecodable one.
func (m *WS) Frame(typ string) {
	if m == nil {
		return
	}
	if !wsFrameTypes[typ] {
		typ = "invalid"
	}
	m.frames.WithLabelValues(typ).Inc()
}

// Closed counts one server-initiated close.
func (m *WS) Closed(reason string) {
	if m == nil {
		return
	}
	m.closes.WithLabelValues(reason).Inc()
}

// GapFilled counts one gap in live delivery filled from the store.
func (m *WS) GapFilled() {
	if m == nil {
		return
	}
	m.gapFills.Inc()
}

// DeliveryLag records how long the live event just handled waited in the
// node's bus queue.
func (m *WS) DeliveryLag(d time.Duration) {
	if m == nil {
		return
	}
	m.lag.Set(d.Seconds())
}

// SendsHeld counts n sends of one connection held for d because delivery
// was behind.
func (m *WS) SendsHeld(n int, d time.Duration) {
	if m == nil {
		return
	}
	m.held.Add(float64(n))
	m.heldSecs.Add(d.Seconds())
}

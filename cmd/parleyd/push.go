package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parleychat/parley"
	"github.com/parleychat/parley/bus/natsbus"
	"github.com/parleychat/parley/outbound"
	"github.com/parleychat/parley/push"
	"github.com/parleychat/parley/service"
	"github.com/parleychat/parley/wsgate"
)

// The push role's ports, as wired here.
var (
	_ service.PushQueue = (*push.Queue)(nil)
	_ push.Store        = parley.Store(nil)
	_ push.ViewStore    = parley.Store(nil)
	_ push.Liveness     = (*natsbus.Presence)(nil)
	_ push.Liveness     = localLiveness{}
	_ push.Provider     = (*push.APNs)(nil)
	_ push.Provider     = (*push.FCM)(nil)
	_ push.Provider     = (*push.WebPush)(nil)
)

// newPushWorker builds the push role: the providers that are configured
// (Web Push always, with the server's VAPID key; APNs and FCM when their
// credentials are given) and the worker over the queue.
func newPushWorker(ctx context.Context, cfg *Config, svc *service.Service, store parley.Store, q *push.Queue, live push.Liveness, log *slog.Logger) (*push.Worker, error) {
	pc := cfg.Push
	tlsConf, err := push.TLSConfig(pc.CAFile)
	if err != nil {
		return nil, err
	}
	var providers []push.Provider
	if pc.APNsKeyFile != "" {
		a, err := push.NewAPNs(push.APNsConfig{KeyFile: pc.APNsKeyFile, KeyID: pc.APNsKeyID, TeamID: pc.APNsTeamID, URL: pc.APNsURL, TLS: tlsConf})
		if err != nil {
			return nil, err
		}
		providers = append(providers, a)
	}
	if pc.FCMCredentials != "" {
		f, err := push.NewFCM(ctx, push.FCMConfig{CredentialsFile: pc.FCMCredentials, ProjectID: pc.FCMProject, URL: pc.FCMURL, TLS: tlsConf})
		if err != nil {
			return nil, err
		}
		providers = append(providers, f)
	}
	// Web Push is on when the server has a VAPID subject: push services
	// may use it to reach the operator, so it must be theirs, not one
	// made up from the host name.
	if pc.VAPIDSubject != "" {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		private, public, err := svc.VAPIDKeys(sctx)
		if err != nil {
			return nil, fmt.Errorf("push: VAPID key: %w", err)
		}
		// Users choose Web Push endpoints: they go through the outbound
		// client (no blocked addresses, no proxy, no redirects).
		client := outbound.NewClient(outbound.ClientConfig{Policy: cfg.OutboundAllow, TLS: tlsConf})
		providers = append(providers, push.NewWebPush(push.WebPushConfig{PublicKey: public, PrivateKey: private, Subject: pc.VAPIDSubject, Client: client}))
	} else if len(svc.Config().VAPIDPrivateKey) > 0 {
		return nil, errors.New("push: PARLEY_VAPID_PRIVATE_KEY is set but --vapid-subject (PARLEY_VAPID_SUBJECT) is not: Web Push needs a contact for push services, mailto:you@example.com or an https URL")
	} else {
		log.Warn("push: Web Push is off: set --vapid-subject (mailto:ops@example.com or an https URL) to turn it on")
	}
	names := make([]string, len(providers))
	for i, p := range providers {
		names[i] = string(p.Name())
	}
	log.Info("push role", "providers", names, "collapse", pc.CollapseWindow.String(), "delivered_grace", pc.DeliveredGrace.String(),
		"outbound_allow", cfg.OutboundAllow.String())
	return push.NewWorker(q, store, live, push.WorkerConfig{
		CollapseWindow: pc.CollapseWindow, DeliveredGrace: pc.DeliveredGrace, TTL: pc.TTL,
		Attempts: pc.Attempts, RetryBase: pc.RetryBase, Preview: pc.Preview,
		Concurrency: pc.Concurrency, HostConcurrency: pc.HostConcurrency, UserConcurrency: pc.UserConcurrency,
		UnknownHostTimeout: pc.UnknownTimeout, EndpointBackoff: pc.EndpointBackoff,
		EndpointDropAfter: pc.EndpointDropAfter, EndpointDropSpan: pc.EndpointDropSpan,
	}, log, providers...), nil
}

// localLiveness answers from this node's gateway: a single node (the
// embedded NATS) has no other.
type localLiveness struct{ gw *wsgate.Gateway }

func (l localLiveness) LiveDevices(_ context.Context, userIDs []string) (map[string]bool, error) {
	live := map[string]bool{}
	if l.gw == nil {
		return live, nil
	}
	for _, d := range l.gw.LiveDevices(userIDs) {
		live[d] = true
	}
	return live, nil
}

// registerPushGauges exports the queue's depth and the age of its oldest
// job, read when Prometheus scrapes. When the stream cannot be read
// (NATS away or too slow to answer within 2 s) both are NaN, not 0: an
// unknown depth must not pass for an empty queue (parley bench waits
// for the queue to drain).
func registerPushGauges(reg prometheus.Registerer, q *push.Queue) {
	depth := func() (float64, float64) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, age, err := q.Depth(ctx)
		if err != nil {
			return math.NaN(), math.NaN()
		}
		return float64(n), age.Seconds()
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_push_queue_depth",
			Help: "Push jobs waiting in the work queue (including those waiting for their collapse window or a retry); NaN when the queue cannot be read."},
			func() float64 { n, _ := depth(); return n }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_push_queue_oldest_seconds",
			Help: "Age of the oldest job in the push work queue; NaN when the queue cannot be read."},
			func() float64 { _, age := depth(); return age }))
}

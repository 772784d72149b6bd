package metrics

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// kad-dht reports its metrics through OpenTelemetry's global meter provider, which is
// process-wide: one bridge per process puts them in a registry of their own, and every node's
// /metrics gathers it beside its own (one node per process in a deployment; in a test running
// several, they share the DHT series).
var (
	otelOnce sync.Once
	otelReg  *prometheus.Registry
	otelErr  error
)

// otelGatherer returns the process-wide registry of OpenTelemetry's metrics (kad-dht's),
// installing the bridge on first use. The DHT's own peer id and instance address are dropped
// from its attributes, so that no peer id becomes a label.
func otelGatherer() (*prometheus.Registry, error) {
	otelOnce.Do(func() {
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutTargetInfo(), otelprom.WithoutScopeInfo(), otelprom.WithNamespace("dht"))
		if err != nil {
			otelErr = fmt.Errorf("metrics: OpenTelemetry bridge: %w", err)
			return
		}
		noIDs := sdkmetric.NewView(sdkmetric.Instrument{Name: "*"}, sdkmetric.Stream{
			AttributeFilter: attribute.NewDenyKeysFilter("peer_id", "instance_id"),
		})
		otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithView(noIDs)))
		otelReg = reg
	})
	return otelReg, otelErr
}

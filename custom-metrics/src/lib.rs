//! Custom metrics from the apps Tideway runs: an OTLP/gRPC metrics receiver that turns
//! gauges and sums tagged with an instance id (`service.instance.id`) into per-instance,
//! per-second series the autoscaler can target. It must never block the receiver on a slow
//! reader, and never keep more than a bounded window per series.

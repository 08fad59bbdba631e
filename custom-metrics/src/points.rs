//! The mapping from an OTLP export request to (instance, metric, second, value) points: a
//! pure function of the request and the receiver's current unix second.
//!
//! - The instance is the resource attribute `service.instance.id`; when the resource has
//!   none, the data point attribute `tideway.instance`, then `service.instance.id`. A point
//!   with none of them is rejected.
//! - Gauges and sums (integer or double points) become one point each, at
//!   `time_unix_nano / 1e9`, or at `now` when the time is 0. Values are taken as they are:
//!   a cumulative counter yields its running total, not a rate, so the autoscaler is meant
//!   to target gauge-like values (queue length, in-flight jobs).
//! - Histograms, exponential histograms and summaries are ignored (neither recorded nor
//!   rejected), and so are points flagged as having no recorded value.
//! - The series do not tell attribute sets apart: two points of one metric, instance and
//!   second with different attributes overwrite each other (the last one wins).

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, DataPointFlags, NumberDataPoint,
};

use crate::series::{Point, Rejection};

/// The OTLP resource attribute that names an instance.
pub const INSTANCE_RESOURCE_ATTRIBUTE: &str = "service.instance.id";
/// The data point attribute that names an instance when the resource does not.
pub const INSTANCE_POINT_ATTRIBUTE: &str = "tideway.instance";
/// How far past the receiver's clock a point may be stamped. A point far in the future would
/// push everything else out of its series' window.
pub const MAX_FUTURE_SECS: i64 = 300;

/// The points of one request, and the rejections found while decoding it.
#[derive(Debug, Default)]
pub(crate) struct Decoded<'a> {
    pub points: Vec<Point<'a>>,
    pub rejected: Vec<Rejection>,
}

/// Decodes `request`, taking `now` (unix seconds) for points without a timestamp.
pub(crate) fn decode(request: &ExportMetricsServiceRequest, now: i64) -> Decoded<'_> {
    let mut decoded = Decoded::default();
    for resource_metrics in &request.resource_metrics {
        let resource_instance = resource_metrics
            .resource
            .as_ref()
            .and_then(|r| string_attribute(&r.attributes, INSTANCE_RESOURCE_ATTRIBUTE));
        let metrics = resource_metrics
            .scope_metrics
            .iter()
            .flat_map(|scope| &scope.metrics);
        for metric in metrics {
            let data_points = match &metric.data {
                Some(metric::Data::Gauge(gauge)) => &gauge.data_points,
                Some(metric::Data::Sum(sum)) => &sum.data_points,
                Some(
                    metric::Data::Histogram(_)
                    | metric::Data::ExponentialHistogram(_)
                    | metric::Data::Summary(_),
                )
                | None => continue,
            };
            for data_point in data_points {
                match decode_point(resource_instance, &metric.name, data_point, now) {
                    Ok(Some(point)) => decoded.points.push(point),
                    Ok(None) => {}
                    Err(rejection) => decoded.rejected.push(rejection),
                }
            }
        }
    }
    decoded
}

/// One data point; `Ok(None)` for a point that explicitly has no recorded value.
fn decode_point<'a>(
    resource_instance: Option<&'a str>,
    name: &'a str,
    data_point: &'a NumberDataPoint,
    now: i64,
) -> Result<Option<Point<'a>>, Rejection> {
    if data_point.flags & (DataPointFlags::NoRecordedValueMask as u32) != 0 {
        return Ok(None);
    }
    let instance = resource_instance
        .or_else(|| string_attribute(&data_point.attributes, INSTANCE_POINT_ATTRIBUTE))
        .or_else(|| string_attribute(&data_point.attributes, INSTANCE_RESOURCE_ATTRIBUTE))
        .ok_or(Rejection::NoInstance)?;
    let value = match data_point.value {
        Some(number_data_point::Value::AsDouble(value)) => value,
        // Precision loss above 2^53 is fine for a scaling signal.
        Some(number_data_point::Value::AsInt(value)) => value as f64,
        None => return Err(Rejection::NoValue),
    };
    let second = match data_point.time_unix_nano {
        0 => now,
        // At most about 1.8e10, well inside i64.
        nanos => i64::try_from(nanos / 1_000_000_000).unwrap_or(i64::MAX),
    };
    if second > now.saturating_add(MAX_FUTURE_SECS) {
        return Err(Rejection::TooNew);
    }
    Ok(Some(Point {
        instance,
        name,
        second,
        value,
    }))
}

/// The non-empty string value of attribute `key`.
fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().filter(|kv| kv.key == key).find_map(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    use super::*;

    const NOW: i64 = 1_700_000_000;
    const AT: u64 = 1_699_999_990_500_000_000;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_owned())),
            }),
        }
    }

    fn double(time_unix_nano: u64, value: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            time_unix_nano,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    fn gauge(name: &str, data_points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.to_owned(),
            data: Some(metric::Data::Gauge(Gauge { data_points })),
            ..Default::default()
        }
    }

    fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn point<'a>(instance: &'a str, name: &'a str, second: i64, value: f64) -> Point<'a> {
        Point {
            instance,
            name,
            second,
            value,
        }
    }

    #[test]
    fn gauges_and_sums_of_the_resource_instance() {
        let sum = Metric {
            name: "jobs_total".to_owned(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: AT,
                    value: Some(number_data_point::Value::AsInt(42)),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let histogram = Metric {
            name: "latency".to_owned(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint::default()],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        };
        let req = request(
            vec![
                kv("service.name", "web"),
                kv("service.instance.id", "web-1"),
            ],
            vec![
                gauge("queue_length", vec![double(AT, 7.5, vec![])]),
                sum,
                histogram,
                Metric::default(),
            ],
        );

        let decoded = decode(&req, NOW);
        assert_eq!(
            decoded.points,
            vec![
                point("web-1", "queue_length", NOW - 10, 7.5),
                point("web-1", "jobs_total", NOW - 10, 42.0),
            ]
        );
        assert!(decoded.rejected.is_empty());
    }

    #[test]
    fn instance_falls_back_to_point_attributes() {
        let req = request(
            vec![kv("service.name", "web"), kv("service.instance.id", "")],
            vec![gauge(
                "q",
                vec![
                    double(AT, 1.0, vec![kv("tideway.instance", "a")]),
                    double(AT, 2.0, vec![kv("service.instance.id", "b")]),
                    double(
                        AT,
                        3.0,
                        vec![kv("service.instance.id", "c"), kv("tideway.instance", "d")],
                    ),
                    double(AT, 4.0, vec![kv("other", "e")]),
                ],
            )],
        );

        let decoded = decode(&req, NOW);
        assert_eq!(
            decoded.points,
            vec![
                point("a", "q", NOW - 10, 1.0),
                point("b", "q", NOW - 10, 2.0),
                point("d", "q", NOW - 10, 3.0),
            ]
        );
        assert_eq!(decoded.rejected, vec![Rejection::NoInstance]);
    }

    #[test]
    fn the_resource_instance_wins_over_point_attributes() {
        let req = request(
            vec![kv("service.instance.id", "res")],
            vec![gauge(
                "q",
                vec![double(AT, 1.0, vec![kv("tideway.instance", "pt")])],
            )],
        );
        assert_eq!(
            decode(&req, NOW).points,
            vec![point("res", "q", NOW - 10, 1.0)]
        );
    }

    #[test]
    fn timestamps_missing_or_in_the_future() {
        let future = u64::try_from(NOW + MAX_FUTURE_SECS + 1).unwrap() * 1_000_000_000;
        let edge = u64::try_from(NOW + MAX_FUTURE_SECS).unwrap() * 1_000_000_000;
        let req = request(
            vec![kv("service.instance.id", "a")],
            vec![gauge(
                "q",
                vec![
                    double(0, 1.0, vec![]),
                    double(future, 2.0, vec![]),
                    double(edge, 3.0, vec![]),
                    double(u64::MAX, 4.0, vec![]),
                ],
            )],
        );

        let decoded = decode(&req, NOW);
        assert_eq!(
            decoded.points,
            vec![
                point("a", "q", NOW, 1.0),
                point("a", "q", NOW + MAX_FUTURE_SECS, 3.0),
            ]
        );
        assert_eq!(decoded.rejected, vec![Rejection::TooNew; 2]);
    }

    #[test]
    fn points_without_a_value() {
        let no_value = NumberDataPoint {
            time_unix_nano: AT,
            ..Default::default()
        };
        let flagged = NumberDataPoint {
            flags: DataPointFlags::NoRecordedValueMask as u32,
            ..double(AT, 1.0, vec![])
        };
        let req = request(
            vec![kv("service.instance.id", "a")],
            vec![gauge("q", vec![no_value, flagged])],
        );

        let decoded = decode(&req, NOW);
        assert!(decoded.points.is_empty());
        assert_eq!(decoded.rejected, vec![Rejection::NoValue]);
    }

    #[test]
    fn an_empty_request_has_no_points() {
        let empty = ExportMetricsServiceRequest::default();
        let decoded = decode(&empty, NOW);
        assert!(decoded.points.is_empty());
        assert!(decoded.rejected.is_empty());
    }
}

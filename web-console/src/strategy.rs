//! The release form: its fields turned into a [`Strategy`] (through its JSON form, so the
//! API types' own defaults and unknown-field checks apply).

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use tideway_api_types::Strategy;

pub type Form = HashMap<String, String>;

fn field<'f>(form: &'f Form, name: &str) -> Option<&'f str> {
    form.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

fn number(form: &Form, name: &str, what: &str) -> Result<Option<u64>, String> {
    field(form, name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| format!("{what} must be a whole number, got '{v}'"))
        })
        .transpose()
}

fn put(obj: &mut Map<String, Value>, key: &str, v: Option<u64>) {
    if let Some(v) = v {
        obj.insert(key.into(), json!(v));
    }
}

fn analysis(form: &Form) -> Result<Option<Value>, String> {
    if field(form, "analysis").is_none() {
        return Ok(None);
    }
    let mut a = Map::new();
    put(
        &mut a,
        "interval_secs",
        number(form, "analysis_interval_secs", "Check interval")?,
    );
    put(
        &mut a,
        "min_requests",
        number(form, "analysis_min_requests", "Minimum requests")?,
    );
    if let Some(v) = field(form, "analysis_success_rate") {
        let rate: f64 = v
            .parse()
            .map_err(|_| format!("Success rate must be a number, got '{v}'"))?;
        a.insert("success_rate_percent".into(), json!(rate));
    }
    Ok(Some(Value::Object(a)))
}

/// The strategy a submitted release form describes.
pub fn from_form(form: &Form) -> Result<Strategy, String> {
    let kind = field(form, "strategy").unwrap_or("immediate");
    let mut s = Map::new();
    s.insert("type".into(), json!(kind));
    match kind {
        "immediate" => {}
        "canary" => {
            let weights = field(form, "canary_weights")
                .ok_or("Canary weights are required, e.g. 20, 50")?
                .split([',', ' '])
                .filter(|w| !w.is_empty())
                .map(|w| {
                    w.trim_end_matches('%')
                        .parse::<u32>()
                        .map_err(|_| format!("'{w}' is not a weight (0–100)"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            s.insert("weights".into(), json!(weights));
            put(
                &mut s,
                "pause_secs",
                number(form, "canary_pause_secs", "Pause")?,
            );
        }
        "gray" => {
            let name = field(form, "gray_header").ok_or("The gray rule needs a header name")?;
            let value = field(form, "gray_value").ok_or("The gray rule needs a header value")?;
            s.insert(
                "rules".into(),
                json!([{"header": {"name": name, "exact": value}}]),
            );
            put(
                &mut s,
                "weight",
                number(form, "gray_weight", "Weight of other requests")?,
            );
            put(
                &mut s,
                "pause_secs",
                number(form, "gray_pause_secs", "Pause")?,
            );
        }
        "batch" => {
            put(
                &mut s,
                "batches",
                Some(number(form, "batch_batches", "Batches")?.unwrap_or(2)),
            );
            put(
                &mut s,
                "interval_secs",
                number(form, "batch_interval_secs", "Interval")?,
            );
            if field(form, "batch_beta").is_some() {
                s.insert("beta".into(), json!(true));
            }
        }
        "blue_green" => {
            if let Some(host) = field(form, "bg_preview_host") {
                s.insert("preview_host".into(), json!(host));
            }
            put(
                &mut s,
                "auto_promote_secs",
                number(form, "bg_auto_promote_secs", "Auto-promote")?,
            );
            put(
                &mut s,
                "keep_old_secs",
                number(form, "bg_keep_old_secs", "Keep old")?,
            );
        }
        other => return Err(format!("unknown strategy '{other}'")),
    }
    if kind != "immediate" {
        if let Some(a) = analysis(form)? {
            s.insert("analysis".into(), a);
        }
    }
    serde_json::from_value(Value::Object(s)).map_err(|e| format!("invalid strategy: {e}"))
}

#[cfg(test)]
mod tests {
    use tideway_api_types::{CanaryStrategy, Strategy};

    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn canary_with_an_indefinite_pause() {
        let s = from_form(&form(&[
            ("strategy", "canary"),
            ("canary_weights", "20, 50%"),
            ("canary_pause_secs", ""),
            ("gray_header", "ignored"),
        ]))
        .unwrap();
        assert_eq!(
            s,
            Strategy::Canary(CanaryStrategy {
                steps: vec![],
                weights: vec![20, 50],
                linear: None,
                pause_secs: None,
                analysis: None,
            })
        );
    }

    #[test]
    fn other_strategies_and_errors() {
        assert_eq!(from_form(&form(&[])).unwrap(), Strategy::Immediate);
        let gray = from_form(&form(&[
            ("strategy", "gray"),
            ("gray_header", "x-beta"),
            ("gray_value", "1"),
            ("gray_weight", "10"),
            ("analysis", "on"),
            ("analysis_interval_secs", "5"),
        ]))
        .unwrap();
        let Strategy::Gray(g) = gray else { panic!() };
        assert_eq!(g.rules[0].header.as_ref().unwrap().name, "x-beta");
        assert_eq!(g.weight, 10);
        assert_eq!(g.analysis.unwrap().interval_secs, 5);
        let Strategy::Batch(b) =
            from_form(&form(&[("strategy", "batch"), ("batch_beta", "on")])).unwrap()
        else {
            panic!()
        };
        assert!(b.beta && b.batches == 2);
        assert!(matches!(
            from_form(&form(&[("strategy", "blue_green")])).unwrap(),
            Strategy::BlueGreen(bg) if bg.keep_old_secs == 600
        ));
        let err = from_form(&form(&[("strategy", "canary"), ("canary_weights", "x")]));
        assert_eq!(err.unwrap_err(), "'x' is not a weight (0–100)");
        assert!(from_form(&form(&[("strategy", "gray")])).is_err());
        assert!(from_form(&form(&[("strategy", "nope")])).is_err());
    }
}

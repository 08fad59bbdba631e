//! Checks a strategy before a release is created, naming the first bad field the way the
//! user wrote it (`strategy.steps[2].set_weight`).

use tideway_api_types::{
    Analysis, BatchStrategy, BlueGreenStrategy, CanaryStep, CanaryStrategy, GrayRule, GrayStrategy,
    HashRange, HeaderMatch, Sticky, Strategy, ValueMatch,
};

/// A strategy field that is out of bounds or inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The field's path, e.g. `strategy.steps[2].set_weight`.
    pub field: String,
    pub message: String,
}

type Checked = Result<(), Invalid>;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Checked {
    Err(Invalid {
        field: field.into(),
        message: message.into(),
    })
}

/// Checks every bound of `strategy`; the first problem found is returned.
pub fn validate(strategy: &Strategy) -> Checked {
    match strategy {
        Strategy::Immediate => Ok(()),
        Strategy::Canary(c) => canary(c),
        Strategy::Gray(g) => gray(g),
        Strategy::Batch(b) => batch(b),
        Strategy::BlueGreen(bg) => blue_green(bg),
    }
}

/// Steps, shorthand weights and analysis checks are capped so plans stay readable.
const MAX_STEPS: usize = 100;

fn percent(field: &str, value: u32) -> Checked {
    if value > 100 {
        return invalid(field, format!("{value} is not a percentage (0–100)"));
    }
    Ok(())
}

fn seconds(field: &str, value: Option<u32>, absent: &str) -> Checked {
    if value == Some(0) {
        return invalid(field, format!("must be at least 1 second ({absent})"));
    }
    Ok(())
}

fn canary(c: &CanaryStrategy) -> Checked {
    let given = [
        !c.steps.is_empty(),
        !c.weights.is_empty(),
        c.linear.is_some(),
    ];
    match given.iter().filter(|g| **g).count() {
        0 => return invalid("strategy", "a canary needs one of steps, weights or linear"),
        1 => {}
        _ => return invalid("strategy", "give only one of steps, weights or linear"),
    }
    if let Some(a) = &c.analysis {
        analysis("strategy.analysis", a)?;
    }
    if !c.steps.is_empty() {
        if c.pause_secs.is_some() {
            return invalid(
                "strategy.pause_secs",
                "applies to weights and linear only; write pause steps between explicit steps",
            );
        }
        if c.steps.len() > MAX_STEPS {
            return invalid("strategy.steps", format!("at most {MAX_STEPS} steps"));
        }
        let mut traffic = false;
        for (i, s) in c.steps.iter().enumerate() {
            match s {
                CanaryStep::SetWeight(w) => {
                    percent(&format!("strategy.steps[{i}].set_weight"), *w)?;
                    traffic = *w > 0;
                }
                CanaryStep::Pause(p) => seconds(
                    &format!("strategy.steps[{i}].pause.duration_secs"),
                    p.duration_secs,
                    "omit it to wait for promote",
                )?,
                CanaryStep::Analysis(a) => {
                    let field = format!("strategy.steps[{i}].analysis");
                    if c.analysis.is_none() {
                        return invalid(field, "an analysis step needs strategy.analysis");
                    }
                    if !traffic {
                        return invalid(
                            field,
                            "an analysis step needs traffic on the target: put a set_weight above 0 before it",
                        );
                    }
                    if a.checks == 0 || a.checks > 100 {
                        return invalid(format!("{field}.checks"), "must be 1–100");
                    }
                }
            }
        }
    }
    if !c.weights.is_empty() {
        if c.weights.len() > MAX_STEPS {
            return invalid("strategy.weights", format!("at most {MAX_STEPS} weights"));
        }
        let mut previous = None;
        for (i, w) in c.weights.iter().enumerate() {
            let field = format!("strategy.weights[{i}]");
            percent(&field, *w)?;
            if let Some(p) = previous {
                if *w <= p {
                    return invalid(field, format!("{w} does not increase on {p}"));
                }
            }
            previous = Some(*w);
        }
    }
    if let Some(l) = &c.linear {
        if l.step == 0 || l.step > 100 {
            return invalid("strategy.linear.step", "must be 1–100");
        }
        if l.up_to > 100 {
            return invalid(
                "strategy.linear.up_to",
                format!("{} is not a percentage (0–100)", l.up_to),
            );
        }
        if l.up_to < l.step {
            return invalid(
                "strategy.linear.up_to",
                format!("{} is below the first step of {}", l.up_to, l.step),
            );
        }
    }
    if !c.steps.is_empty() {
        return Ok(());
    }
    seconds(
        "strategy.pause_secs",
        c.pause_secs,
        "omit it to wait for promote",
    )
}

fn gray(g: &GrayStrategy) -> Checked {
    if g.rules.is_empty() {
        return invalid("strategy.rules", "a gray release needs at least one rule");
    }
    if g.rules.len() > MAX_STEPS {
        return invalid("strategy.rules", format!("at most {MAX_STEPS} rules"));
    }
    for (i, r) in g.rules.iter().enumerate() {
        rule(&format!("strategy.rules[{i}]"), r)?;
    }
    percent("strategy.weight", g.weight)?;
    if let Some(s) = &g.sticky {
        sticky("strategy.sticky", s)?;
    }
    seconds(
        "strategy.pause_secs",
        g.pause_secs,
        "omit it to wait for promote",
    )?;
    if let Some(a) = &g.analysis {
        analysis("strategy.analysis", a)?;
    }
    Ok(())
}

fn rule(field: &str, r: &GrayRule) -> Checked {
    let given = [
        r.header.is_some(),
        r.cookie.is_some(),
        r.query.is_some(),
        r.hash.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return invalid(field, "give exactly one of header, cookie, query, hash");
    }
    if let Some(h) = &r.header {
        header(&format!("{field}.header"), h)?;
    }
    if let Some(c) = &r.cookie {
        value_match(&format!("{field}.cookie"), c)?;
    }
    if let Some(q) = &r.query {
        value_match(&format!("{field}.query"), q)?;
    }
    if let Some(h) = &r.hash {
        hash(&format!("{field}.hash"), h)?;
    }
    Ok(())
}

fn header(field: &str, h: &HeaderMatch) -> Checked {
    token(&format!("{field}.name"), &h.name)?;
    let given = [&h.exact, &h.prefix, &h.regex];
    if given.iter().filter(|g| g.is_some()).count() != 1 {
        return invalid(field, "give exactly one of exact, prefix, regex");
    }
    if h.regex.as_deref() == Some("") {
        return invalid(format!("{field}.regex"), "must not be empty");
    }
    Ok(())
}

fn value_match(field: &str, v: &ValueMatch) -> Checked {
    token(&format!("{field}.name"), &v.name)
}

fn hash(field: &str, h: &HashRange) -> Checked {
    one_key(field, h.header.as_deref(), h.cookie.as_deref())?;
    if h.from >= h.to || h.to > 100 {
        return invalid(
            field,
            format!(
                "from {} to {} is not a range within 0–100 (from < to)",
                h.from, h.to
            ),
        );
    }
    Ok(())
}

fn sticky(field: &str, s: &Sticky) -> Checked {
    one_key(field, s.header.as_deref(), s.cookie.as_deref())
}

fn one_key(field: &str, header: Option<&str>, cookie: Option<&str>) -> Checked {
    match (header, cookie) {
        (Some(h), None) => token(&format!("{field}.header"), h),
        (None, Some(c)) => token(&format!("{field}.cookie"), c),
        _ => invalid(field, "give exactly one of header, cookie"),
    }
}

/// An HTTP token (RFC 9110): header, cookie and query parameter names.
fn token(field: &str, name: &str) -> Checked {
    const EXTRA: &str = "!#$%&'*+-.^_`|~";
    if name.is_empty() || name.len() > 256 {
        return invalid(field, "must be 1–256 characters");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || EXTRA.contains(*c)))
    {
        return invalid(
            field,
            format!("{name:?} has {c:?}, which a name cannot hold"),
        );
    }
    Ok(())
}

fn batch(b: &BatchStrategy) -> Checked {
    if b.batches == 0 || b.batches > 100 {
        return invalid("strategy.batches", "must be 1–100");
    }
    if b.beta && b.batches < 2 {
        return invalid("strategy.beta", "a beta batch needs at least 2 batches");
    }
    seconds(
        "strategy.interval_secs",
        b.interval_secs,
        "omit it to wait for promote",
    )?;
    if let Some(a) = &b.analysis {
        analysis("strategy.analysis", a)?;
    }
    Ok(())
}

fn blue_green(bg: &BlueGreenStrategy) -> Checked {
    if let Some(host) = &bg.preview_host {
        hostname("strategy.preview_host", host)?;
    }
    if let Some(a) = &bg.analysis {
        analysis("strategy.analysis", a)?;
    }
    Ok(())
}

/// A lowercase DNS name: dot-separated labels of `a-z0-9-`, not starting or ending in `-`.
fn hostname(field: &str, host: &str) -> Checked {
    if host.is_empty() || host.len() > 253 {
        return invalid(field, "must be 1–253 characters");
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return invalid(
                field,
                format!("{host:?} is not a lowercase host name (labels of a-z, 0-9 and -)"),
            );
        }
    }
    Ok(())
}

fn analysis(field: &str, a: &Analysis) -> Checked {
    if a.interval_secs == 0 || a.interval_secs > 3600 {
        return invalid(format!("{field}.interval_secs"), "must be 1–3600");
    }
    if !(0.0..=100.0).contains(&a.success_rate_percent) {
        return invalid(
            format!("{field}.success_rate_percent"),
            "must be a percentage (0–100)",
        );
    }
    for (name, v) in [
        ("p99_max_ms", a.p99_max_ms),
        ("p99_max_factor", a.p99_max_factor),
    ] {
        if let Some(v) = v {
            if !(v.is_finite() && v > 0.0) {
                return invalid(format!("{field}.{name}"), "must be above 0");
            }
        }
    }
    if a.failure_limit == 0 {
        return invalid(
            format!("{field}.failure_limit"),
            "must be at least 1 (the number of failed checks that aborts)",
        );
    }
    Ok(())
}

//! Header rewriting between the client and the upstream: hop-by-hop removal, the
//! `X-Forwarded-*` family, request ids and W3C trace context.

use http::header::{
    CONNECTION, EXPECT, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use rand::RngCore;

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

const HEX: &[u8; 16] = b"0123456789abcdef";

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Whether the request asks for a WebSocket upgrade (`Connection: upgrade` and
/// `Upgrade: websocket`). Other upgrades (such as `h2c`) are not forwarded.
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    has_token(headers, &CONNECTION, "upgrade") && has_token(headers, &UPGRADE, "websocket")
}

/// Removes hop-by-hop headers: `Connection` and every header it lists, `Keep-Alive`,
/// `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding` and `Upgrade`. With `upgrade`, keeps
/// `Upgrade` and sets `Connection: upgrade` so the upgrade reaches the other side.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Listed names other than the usual tokens (which need no removal of their own); the
    // vector only allocates when a client lists a custom header.
    let mut listed: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(b"keep-alive")
                || token.eq_ignore_ascii_case(b"upgrade")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                listed.push(name);
            }
        }
    }
    headers.remove(CONNECTION);
    for name in listed {
        headers.remove(name);
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

/// Prepares a request's headers for the upstream: hop-by-hop removal (and `Expect`, which
/// the gateway already answered), `X-Forwarded-For` (client IP appended),
/// `X-Forwarded-Proto: http`, `X-Forwarded-Host`, `Host` kept (or taken from `:authority`),
/// the request id and a valid `traceparent`.
pub(crate) fn prepare_upstream(
    headers: &mut HeaderMap,
    upgrade: bool,
    client_ip: &HeaderValue,
    original_host: Option<HeaderValue>,
    request_id: &HeaderValue,
) {
    strip_hop_by_hop(headers, upgrade);
    headers.remove(EXPECT);

    let forwarded_for = match headers.entry(&X_FORWARDED_FOR) {
        http::header::Entry::Occupied(entry) => {
            let (_, values) = entry.remove_entry_mult();
            let mut joined = Vec::with_capacity(64);
            for v in values {
                joined.extend_from_slice(v.as_bytes());
                joined.extend_from_slice(b", ");
            }
            joined.extend_from_slice(client_ip.as_bytes());
            HeaderValue::from_maybe_shared(bytes::Bytes::from(joined))
                .unwrap_or_else(|_| client_ip.clone())
        }
        http::header::Entry::Vacant(_) => client_ip.clone(),
    };
    headers.insert(&X_FORWARDED_FOR, forwarded_for);
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Some(host) = original_host {
        if !headers.contains_key(HOST) {
            headers.insert(HOST, host.clone());
        }
        headers.insert(&X_FORWARDED_HOST, host);
    }
    headers.insert(&X_REQUEST_ID, request_id.clone());

    let valid = headers
        .get(&TRACEPARENT)
        .is_some_and(|v| valid_traceparent(v.as_bytes()));
    if !valid {
        headers.remove(&TRACESTATE);
        headers.insert(&TRACEPARENT, new_traceparent(&mut rand::thread_rng()));
    }
}

/// The incoming `X-Request-Id` when it is usable (1–128 visible ASCII characters), or a new
/// random one (32 hex digits).
pub(crate) fn request_id(headers: &HeaderMap, rng: &mut impl RngCore) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    let mut raw = [0u8; 16];
    rng.fill_bytes(&mut raw);
    let mut out = [0u8; 32];
    hex_into(&raw, &mut out);
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn hex_into(raw: &[u8], out: &mut [u8]) {
    for (i, b) in raw.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
}

fn is_lower_hex(b: &[u8]) -> bool {
    b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether a `traceparent` value is valid per W3C Trace Context: `version-traceid-
/// parentid-flags`, lowercase hex, version not `ff`, ids not all zero; version `00` is
/// exactly 55 characters, later versions may append `-…` fields.
pub(crate) fn valid_traceparent(v: &[u8]) -> bool {
    if v.len() < 55 {
        return false;
    }
    let (version, trace, parent, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return false;
    }
    let hex = [version, trace, parent, flags];
    if !hex.iter().all(|part| is_lower_hex(part)) {
        return false;
    }
    if version == b"ff" || trace.iter().all(|&c| c == b'0') || parent.iter().all(|&c| c == b'0') {
        return false;
    }
    match version {
        b"00" => v.len() == 55,
        _ => v.len() == 55 || v[55] == b'-',
    }
}

/// Starts a new trace: random trace and span ids, sampled flag.
pub(crate) fn new_traceparent(rng: &mut impl RngCore) -> HeaderValue {
    let mut ids = [0u8; 24];
    loop {
        rng.fill_bytes(&mut ids);
        if ids[..16].iter().any(|&b| b != 0) && ids[16..].iter().any(|&b| b != 0) {
            break;
        }
    }
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-01";
    hex_into(&ids[..16], &mut out[3..35]);
    hex_into(&ids[16..], &mut out[36..52]);
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<String> {
        let mut n: Vec<String> = h.keys().map(|k| k.to_string()).collect();
        n.sort();
        n
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "close"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "x"),
            ("proxy-connection", "x"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["accept"]);
    }

    #[test]
    fn upgrade_headers_kept_for_upgrades() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "abc"),
        ]);
        assert!(is_websocket_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(names(&h), ["connection", "sec-websocket-key", "upgrade"]);
        assert_eq!(h["connection"], "upgrade");
        assert!(!is_websocket_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(!is_websocket_upgrade(&map(&[
            ("connection", "upgrade"),
            ("upgrade", "h2c")
        ])));
    }

    #[test]
    fn forwarded_headers() {
        let ip = HeaderValue::from_static("10.0.0.9");
        let id = HeaderValue::from_static("req-1");
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "https"),
            ("traceparent", tp),
            ("tracestate", "a=b"),
            ("expect", "100-continue"),
        ]);
        let host = HeaderValue::from_static("shop.example.com:8080");
        prepare_upstream(&mut h, false, &ip, Some(host), &id);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example.com:8080");
        assert_eq!(h["host"], "shop.example.com:8080");
        assert_eq!(h["x-request-id"], "req-1");
        assert_eq!(h["traceparent"], tp);
        assert_eq!(h["tracestate"], "a=b");
        assert!(!h.contains_key("expect"));

        let mut h = map(&[
            ("host", "a"),
            ("traceparent", "garbage"),
            ("tracestate", "a=b"),
        ]);
        prepare_upstream(&mut h, false, &ip, None, &id);
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["host"], "a");
        assert!(!h.contains_key("x-forwarded-host"));
        assert!(valid_traceparent(h["traceparent"].as_bytes()));
        assert!(h["traceparent"].to_str().unwrap().ends_with("-01"));
        assert!(!h.contains_key("tracestate"));
    }

    #[test]
    fn traceparent_validation() {
        let cases = [
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                true,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                true,
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
                true,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz",
                false,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                false,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
                false,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
            ("", false),
        ];
        for (v, want) in cases {
            assert_eq!(valid_traceparent(v.as_bytes()), want, "{v}");
        }
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let tp = new_traceparent(&mut rng);
            assert!(valid_traceparent(tp.as_bytes()), "{tp:?}");
        }
    }

    #[test]
    fn request_ids() {
        let mut rng = StdRng::seed_from_u64(1);
        let kept = request_id(&map(&[("x-request-id", "abc-123")]), &mut rng);
        assert_eq!(kept, "abc-123");
        let fresh = request_id(&map(&[("x-request-id", "has space")]), &mut rng);
        assert_eq!(fresh.len(), 32);
        assert!(is_lower_hex(fresh.as_bytes()));
        let other = request_id(&HeaderMap::new(), &mut rng);
        assert_ne!(fresh, other);
    }
}

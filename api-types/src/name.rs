//! Names of namespaces, apps and tokens: RFC 1123 DNS labels, so they fit hostnames
//! (`{app}.{ns}.localhost`), registry service names and Kubernetes objects alike.

/// The longest allowed name.
pub const MAX_LEN: usize = 63;

/// Why a string is not a DNS label.
pub fn dns_label_error(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("must not be empty");
    }
    if s.len() > MAX_LEN {
        return Some("must be at most 63 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("may contain only lowercase letters, digits and '-'");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("must start and end with a letter or digit");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::dns_label_error;

    #[test]
    fn accepts_and_rejects_dns_labels() {
        for ok in ["a", "default", "my-app-2", &"x".repeat(63)] {
            assert_eq!(dns_label_error(ok), None, "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64), "héllo"] {
            assert!(dns_label_error(bad).is_some(), "{bad}");
        }
    }
}

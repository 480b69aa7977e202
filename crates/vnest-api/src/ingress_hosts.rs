//! Which host names a tenant's Ingresses may claim on the host's ingress
//! controllers. The admin grants patterns per VirtualCluster
//! (`spec.isolation.ingress.hosts`): `shop.example.com` (that name),
//! `*.shop.example.com` (every name under that domain, at any depth, and
//! wildcard hosts under it) or `*` (every name, and rules without a host,
//! which catch every name no other rule claims). Two VirtualClusters'
//! patterns overlap when one covers what the other names; the older
//! VirtualCluster keeps an overlapping pattern.

/// Whether grant `pattern` covers Ingress host `host` (`None`: a rule or
/// default backend without a host, which only `*` covers).
pub fn covers(pattern: &str, host: Option<&str>) -> bool {
    if pattern == "*" {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    match pattern.strip_prefix('*') {
        // `*.example.com`: the suffix `.example.com` with something before it.
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => host == pattern,
    }
}

/// Whether grants `a` and `b` could claim the same name.
pub fn overlap(a: &str, b: &str) -> bool {
    covers(a, Some(b)) || covers(b, Some(a))
}

/// Whether `pattern` is a grant as the CRD admits it (lowercase DNS name,
/// optionally `*.`-prefixed, or `*`).
pub fn is_valid(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The CEL the CRD checks each pattern with: the grammar of [`is_valid`]
/// (a test holds the two together).
pub const PATTERN_CEL: &str = r"self == '*' || self.matches('^([*][.])?[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)+$')";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_covers_its_name_its_domain_or_everything() {
        let cases = [
            ("shop.example.com", Some("shop.example.com"), true),
            ("shop.example.com", Some("x.shop.example.com"), false),
            ("shop.example.com", None, false),
            ("*.shop.example.com", Some("a.shop.example.com"), true),
            ("*.shop.example.com", Some("a.b.shop.example.com"), true),
            ("*.shop.example.com", Some("*.shop.example.com"), true),
            ("*.shop.example.com", Some("shop.example.com"), false),
            ("*.shop.example.com", Some("evilshop.example.com"), false),
            ("*.shop.example.com", Some("*.example.com"), false),
            ("*.shop.example.com", None, false),
            ("*", Some("anything.example.org"), true),
            ("*", None, true),
        ];
        for (pattern, host, expected) in cases {
            assert_eq!(covers(pattern, host), expected, "{pattern} {host:?}");
        }
    }

    #[test]
    fn patterns_overlap_when_either_covers_the_other() {
        assert!(overlap("*.example.com", "shop.example.com"));
        assert!(overlap("shop.example.com", "*.example.com"));
        assert!(overlap("*.example.com", "*.shop.example.com"));
        assert!(overlap("*", "a.example.com"));
        assert!(!overlap("a.example.com", "b.example.com"));
        assert!(!overlap("*.a.example.com", "*.b.example.com"));
        assert!(!overlap("*.a.example.com", "a.example.com"));
    }

    #[test]
    fn valid_patterns_are_what_the_crd_admits() {
        let regex = PATTERN_CEL
            .split_once(".matches('")
            .and_then(|(_, rest)| rest.strip_suffix("')"))
            .unwrap_or_default();
        let crd = regex::Regex::new(regex).unwrap_or_else(|e| panic!("{regex}: {e}"));
        let admitted = |p: &str| p == "*" || crd.is_match(p);
        for good in ["*", "a.example.com", "*.example.com", "x-1.example.com"] {
            assert!(is_valid(good), "{good}");
            assert!(admitted(good), "{good}");
        }
        for bad in [
            "",
            "example",
            "*example.com",
            "a.*.com",
            "A.example.com",
            "-a.example.com",
            "a..com",
            "**.example.com",
        ] {
            assert!(!is_valid(bad), "{bad}");
            assert!(!admitted(bad), "{bad}");
        }
    }
}

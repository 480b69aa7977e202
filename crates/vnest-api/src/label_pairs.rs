//! `KEY=VALUE` label pairs as vnest's commands take them (a node pool's
//! selector: `vnest create --pool`, `vnest-syncer --pool-selector`,
//! `vnest-devhost up --node-label`), and as one label selector.

use std::collections::BTreeMap;

/// An argument that is not `KEY=VALUE` with a non-empty key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not KEY=VALUE (for example vnest.dev/pool=a)")]
pub struct NotAPair(pub String);

/// The pairs as a map (a later key wins).
pub fn parse(items: &[String]) -> Result<BTreeMap<String, String>, NotAPair> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(NotAPair(item.clone())),
        })
        .collect()
}

/// The pairs as one label selector (`k=v,k2=v2`), as the API's
/// `labelSelector` and `kubectl -l` take them.
pub fn selector(pairs: &BTreeMap<String, String>) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_what_is_not_one() {
        let ok = parse(&["vnest.dev/pool=a".to_owned(), "empty=".to_owned()]);
        assert_eq!(
            ok,
            Ok(BTreeMap::from([
                ("empty".to_owned(), String::new()),
                ("vnest.dev/pool".to_owned(), "a".to_owned()),
            ]))
        );
        assert_eq!(parse(&["a".to_owned()]), Err(NotAPair("a".to_owned())));
        assert_eq!(parse(&["=b".to_owned()]), Err(NotAPair("=b".to_owned())));
    }

    #[test]
    fn a_selector_parses_back_into_its_pairs() {
        let pairs = BTreeMap::from([
            ("vnest.dev/pool".to_owned(), "a".to_owned()),
            ("zone".to_owned(), "x".to_owned()),
        ]);
        let rendered = selector(&pairs);
        assert_eq!(rendered, "vnest.dev/pool=a,zone=x");
        let items: Vec<String> = rendered.split(',').map(str::to_owned).collect();
        assert_eq!(parse(&items), Ok(pairs));
    }
}

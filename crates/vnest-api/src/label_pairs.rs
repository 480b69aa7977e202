//! `KEY=VALUE` label pairs as vnest's commands take them (a node pool's
//! selector: `vnest create --pool`, `vnest-syncer --pool-selector`,
//! `vnest-devhost up --node-label`).

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
}

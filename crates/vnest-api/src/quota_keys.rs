//! The ResourceQuota keys that count objects, as the host's quota
//! admission spells them: the supervisor writes them (`spec.hard`) and the
//! syncer reads them back before it creates a host object.

/// The keys counting objects of `resource` (plural) in API `group` (`""`
/// for the core group): `count/<resource>[.<group>]`, and for the five core
/// kinds that had object counts first also the bare name (`services`),
/// which is what vnest writes.
pub fn count_keys(resource: &str, group: &str) -> Vec<String> {
    let counted = if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    };
    match (resource, group) {
        ("pods" | "services" | "configmaps" | "secrets" | "persistentvolumeclaims", "") => {
            vec![resource.to_owned(), counted]
        }
        _ => vec![counted],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_kinds_have_both_spellings_and_others_carry_their_group() {
        assert_eq!(count_keys("services", ""), ["services", "count/services"]);
        assert_eq!(count_keys("endpoints", ""), ["count/endpoints"]);
        assert_eq!(
            count_keys("ingresses", "networking.k8s.io"),
            ["count/ingresses.networking.k8s.io"]
        );
    }
}

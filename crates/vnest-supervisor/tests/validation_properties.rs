//! Hostile VirtualCluster specs: whatever TTL and extra apiserver flags a
//! spec holds, reading them never panics; a TTL is read exactly when the
//! CRD's rule accepts it; and no spelling of a flag vnest sets (dashes,
//! underscores, any value) gets past the supervisor to the apiserver.
//! Property tests: `PROPTEST_CASES=N` runs more cases.
#![allow(clippy::unwrap_used)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use vnest_api::VirtualCluster;
use vnest_supervisor::desired::apiserver;
use vnest_supervisor::status;

/// The flag names vnest's apiserver command line sets.
fn own_flags() -> Vec<String> {
    apiserver::args(&VirtualCluster::new("probe", Default::default()))
        .iter()
        .filter_map(|a| a.strip_prefix("--"))
        .filter_map(|a| a.split('=').next())
        .map(str::to_owned)
        .collect()
}

fn with_args(args: Vec<String>) -> VirtualCluster {
    let mut vc = VirtualCluster::new("a", Default::default());
    vc.spec.control_plane.extra_api_server_args = args;
    vc
}

/// The CRD's rule for `spec.ttl`.
fn crd_accepts(ttl: &str) -> bool {
    regex::Regex::new("^([0-9]+(s|m|h|d))+$")
        .unwrap()
        .is_match(ttl)
}

proptest! {
    /// The CLI and the supervisor read a TTL exactly when the apiserver
    /// accepts it (or refuse it as too long), and never panic on one.
    #[test]
    fn a_ttl_is_read_as_the_crd_accepts_it(ttl in "[0-9smhdx ]{0,24}|[0-9]{1,30}[smhd]") {
        let read = vnest_api::ttl::parse(&ttl);
        match &read {
            Ok(_) => prop_assert!(crd_accepts(&ttl), "{ttl:?}"),
            Err(vnest_api::ttl::TtlError::TooLong(_)) => prop_assert!(crd_accepts(&ttl)),
            Err(vnest_api::ttl::TtlError::Grammar(_)) => prop_assert!(!crd_accepts(&ttl), "{ttl:?}"),
        }
        // When it expires, from any creation time: an answer, never a panic.
        let mut vc = VirtualCluster::new("a", Default::default());
        vc.spec.ttl = Some(ttl.clone());
        vc.metadata.creation_timestamp = Some(Time(Timestamp::MAX));
        let _ = status::expires_at(&vc);
        // One it cannot read never expires by accident: it is refused
        // (one it reads may still end past the year 9999, also refused).
        vc.metadata.creation_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        if read.is_err() {
            prop_assert!(status::expires_at(&vc).is_err());
        }
    }

    /// A flag vnest sets, spelled with dashes or underscores (the
    /// apiserver reads `_` as `-`), one or two leading dashes, any value:
    /// always refused.
    #[test]
    fn no_spelling_of_a_flag_vnest_sets_gets_through(
        pick in any::<prop::sample::Index>(),
        underscores in prop::collection::vec(any::<bool>(), 64),
        dashes in 1usize..3,
        value in "[ -~]{0,20}",
        others in prop::collection::vec("--[a-z][a-z0-9-]{0,20}=[a-z0-9]{0,5}", 0..3),
    ) {
        let flags = own_flags();
        let name: String = flags[pick.index(flags.len())]
            .chars()
            .zip(underscores.iter().cycle())
            .map(|(c, &swap)| if c == '-' && swap { '_' } else { c })
            .collect();
        let hostile = format!("{}{name}={value}", "-".repeat(dashes));
        let mut args = others;
        args.push(hostile.clone());
        let refused = apiserver::protected_flags_in_extra_args(&with_args(args));
        prop_assert!(!refused.is_empty(), "{hostile} got through");
    }

    /// Flags vnest does not set pass, and reach the apiserver's command
    /// line after vnest's own.
    #[test]
    fn other_flags_pass_after_vnests_own(name in "[a-z][a-z0-9]{2,12}-[a-z0-9]{1,12}", value in "[a-z0-9]{0,8}") {
        let own = own_flags();
        prop_assume!(!own.contains(&name) && !name.contains("admission"));
        let arg = format!("--{name}={value}");
        let vc = with_args(vec![arg.clone()]);
        prop_assert!(apiserver::protected_flags_in_extra_args(&vc).is_empty());
        let args = apiserver::args(&vc);
        prop_assert_eq!(args.last(), Some(&arg));
    }
}

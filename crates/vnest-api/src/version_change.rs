//! Which changes of `spec.kubernetesVersion` a running control plane may
//! take: upstream supports upgrading one minor version at a time and no
//! downgrade of a minor (the newer apiserver may have written its data in
//! forms the older cannot read); patch releases within a minor move both
//! ways.

/// A Kubernetes release `v1.MINOR.PATCH`, as `spec.kubernetesVersion`
/// names one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release {
    pub minor: u32,
    pub patch: u32,
}

impl std::str::FromStr for Release {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not a Kubernetes release like v1.37.2");
        let rest = text.strip_prefix("v1.").ok_or_else(bad)?;
        let (minor, patch) = rest.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            minor: minor.parse().map_err(|_| bad())?,
            patch: patch.parse().map_err(|_| bad())?,
        })
    }
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v1.{}.{}", self.minor, self.patch)
    }
}

/// Whether a control plane running `running` may move to `wanted`; the
/// reason, for the VirtualCluster's status, when it may not.
pub fn allowed(running: &str, wanted: &str) -> Result<(), String> {
    let (from, to): (Release, Release) = (running.parse()?, wanted.parse()?);
    if to.minor < from.minor {
        return Err(format!(
            "kubernetesVersion {to} would take the control plane back from {from}: a minor version cannot be downgraded (the newer apiserver may have stored objects the older cannot read); set it back to v1.{}.x, or restore a snapshot taken before the upgrade into a new cluster",
            from.minor
        ));
    }
    if to.minor > from.minor + 1 {
        return Err(format!(
            "kubernetesVersion {to} skips {} minor version(s) from {from}: upgrade one minor version at a time (v1.{}.x first), as upstream supports",
            to.minor - from.minor - 1,
            from.minor + 1
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_minor_up_and_any_patch_are_allowed_downgrades_and_skips_are_not() {
        assert_eq!(allowed("v1.36.3", "v1.37.2"), Ok(()));
        assert_eq!(allowed("v1.37.2", "v1.37.2"), Ok(()));
        assert_eq!(allowed("v1.37.2", "v1.37.0"), Ok(()), "a patch back");
        let down = allowed("v1.37.2", "v1.36.3").unwrap_err();
        assert!(down.contains("cannot be downgraded"), "{down}");
        let skip = allowed("v1.36.3", "v1.38.0").unwrap_err();
        assert!(skip.contains("v1.37.x first"), "{skip}");
        assert!(allowed("v1.37.2", "1.37").is_err());
    }

    #[test]
    fn releases_read_back_as_written() {
        let release: Release = "v1.37.12".parse().unwrap();
        assert_eq!(
            release,
            Release {
                minor: 37,
                patch: 12
            }
        );
        assert_eq!(release.to_string(), "v1.37.12");
        assert!("v2.0.0".parse::<Release>().is_err());
        assert!("v1.x.0".parse::<Release>().is_err());
    }
}

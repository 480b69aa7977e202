//! One run of the scheduled snapshots (`vnest-supervisor etcd-backup`)
//! against a real etcd (a local control plane): each run leaves a verified
//! snapshot with its encryption file beside it (mode 0600), the newest
//! `keep` stay, a member that does not answer is passed over for the next,
//! and a run that reaches no member fails and leaves what was there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use vnest_api::etcd_backup_args::EtcdBackupArgs;
use vnest_supervisor::etcd_backup;
use vnest_tests::TestControlPlane;

#[tokio::test]
async fn runs_keep_the_newest_verified_snapshots_and_a_failed_run_keeps_them() {
    let cp = TestControlPlane::start("backup").await;
    let work = tempfile::tempdir().unwrap();
    let encryption = work.path().join("encryption.yaml");
    std::fs::write(&encryption, "kind: EncryptionConfiguration\n").unwrap();
    let backups = work.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let args = EtcdBackupArgs {
        cluster: "team-a".to_owned(),
        // Nothing listens on port 1: the run goes on to the next member.
        endpoints: vec!["https://127.0.0.1:1".to_owned(), cp.etcd().to_owned()],
        server_name: "localhost".to_owned(),
        pki: cp.pki_dir(),
        encryption: encryption.clone(),
        dir: backups.clone(),
        keep: 2,
    };
    let mut taken = Vec::new();
    for _ in 0..3 {
        let outcome = etcd_backup::run(&args, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(outcome.member, cp.etcd());
        let verified = vnest_etcd::verify(&outcome.file).unwrap();
        assert_eq!(verified.sha256, outcome.sha256);
        let keys = vnest_etcd::saved::encryption_path(&outcome.file);
        assert_eq!(
            std::fs::read_to_string(&keys).unwrap(),
            "kind: EncryptionConfiguration\n"
        );
        assert_eq!(
            std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
            0o600
        );
        taken.push(outcome);
        // Snapshots are named by the second they are taken.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let last = taken.last().unwrap();
    assert_eq!(last.removed, [taken[0].file.clone()], "the oldest went");
    assert!(!vnest_etcd::saved::encryption_path(&taken[0].file).exists());
    let kept: Vec<_> = taken[1..].iter().map(|o| o.file.clone()).collect();
    assert_eq!(last.kept, kept);
    let listed: Vec<String> = etcd_backup::list(&backups)
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(listed.len(), 2);

    let unreachable = EtcdBackupArgs {
        endpoints: vec!["https://127.0.0.1:1".to_owned()],
        ..args
    };
    let error = etcd_backup::run(&unreachable, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no etcd member answered"),
        "{error}"
    );
    assert_eq!(
        etcd_backup::list(&backups).unwrap().len(),
        2,
        "nothing lost"
    );
    cp.stop().await;
}

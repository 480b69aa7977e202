//! The settings of one scheduled etcd snapshot (`spec.backup`), as the
//! supervisor writes them on the command line of its CronJob's pods
//! (`vnest-supervisor etcd-backup …`) and that command reads them back:
//! one type for both ends, tested for the round trip.

use std::path::PathBuf;

/// What one run of the backup CronJob does: snapshot a member of the
/// tenant's etcd into `dir`, put the encryption configuration beside it,
/// and keep the newest `keep` snapshots of the cluster there.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct EtcdBackupArgs {
    /// The cluster's name: snapshots are `NAME-<UTC time>.db`.
    #[arg(long)]
    pub cluster: String,
    /// The members' client URLs, tried in order until one answers.
    #[arg(long = "endpoint", required = true)]
    pub endpoints: Vec<String>,
    /// The name the members' serving certificate carries.
    #[arg(long)]
    pub server_name: String,
    /// The etcd CA (`etcd/ca.crt`) and the client pair
    /// (`apiserver-etcd-client.crt`, `.key`), under this directory.
    #[arg(long)]
    pub pki: PathBuf,
    /// The tenant apiserver's encryption configuration, copied beside
    /// each snapshot.
    #[arg(long)]
    pub encryption: PathBuf,
    /// Where snapshots are kept (the backups' volume).
    #[arg(long)]
    pub dir: PathBuf,
    /// How many snapshots to keep.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
}

impl EtcdBackupArgs {
    /// The command line (without the program name and subcommand) that
    /// reads back as these settings.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![format!("--cluster={}", self.cluster)];
        args.extend(self.endpoints.iter().map(|e| format!("--endpoint={e}")));
        args.extend([
            format!("--server-name={}", self.server_name),
            format!("--pki={}", self.pki.display()),
            format!("--encryption={}", self.encryption.display()),
            format!("--dir={}", self.dir.display()),
            format!("--keep={}", self.keep),
        ]);
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Command {
        #[command(flatten)]
        args: EtcdBackupArgs,
    }

    fn parse(args: &[String]) -> Result<EtcdBackupArgs, clap::Error> {
        Command::try_parse_from(
            std::iter::once("etcd-backup".to_owned()).chain(args.iter().cloned()),
        )
        .map(|c| c.args)
    }

    #[test]
    fn every_setting_reads_back_as_written() {
        let args = EtcdBackupArgs {
            cluster: "team-a".to_owned(),
            endpoints: vec![
                "https://etcd-0.etcd.cp.svc:2379".to_owned(),
                "https://etcd-1.etcd.cp.svc:2379".to_owned(),
            ],
            server_name: "etcd.cp.svc".to_owned(),
            pki: "/etc/vnest/pki".into(),
            encryption: "/etc/vnest/encryption.yaml".into(),
            dir: "/backups".into(),
            keep: 7,
        };
        assert_eq!(parse(&args.to_args()).ok(), Some(args));
    }

    #[test]
    fn keeping_none_is_refused() {
        let mut line = EtcdBackupArgs {
            cluster: "a".to_owned(),
            endpoints: vec!["https://e:2379".to_owned()],
            server_name: "e".to_owned(),
            pki: "/p".into(),
            encryption: "/e".into(),
            dir: "/b".into(),
            keep: 1,
        }
        .to_args();
        line.pop();
        line.push("--keep=0".to_owned());
        assert!(parse(&line).is_err());
    }
}

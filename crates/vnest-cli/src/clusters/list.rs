//! `vnest list`: the VirtualClusters of a namespace (or all), as a table or
//! as JSON/YAML.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use vnest_api::VirtualCluster;

use super::explain;
use crate::host::HostArgs;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  vnest list -n tenants\n  vnest list -A -o wide\n  vnest list -A -o json | jq '.[].metadata.name'"
)]
pub(crate) struct ListArgs {
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    connection: HostArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Wide,
    Json,
    Yaml,
}

fn age(since: Option<&Timestamp>, now: Timestamp) -> String {
    since.map_or_else(
        || "-".to_owned(),
        |t| short_duration(now.as_second() - t.as_second()),
    )
}

/// `kubectl`-style short durations: 45s, 12m, 3h, 2d.
pub(crate) fn short_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// One row of the table.
fn row(vc: &VirtualCluster, now: Timestamp, wide: bool) -> Vec<String> {
    let status = vc.status.clone().unwrap_or_default();
    let mut row = vec![
        vc.metadata.namespace.clone().unwrap_or_default(),
        vc.metadata.name.clone().unwrap_or_default(),
        status.phase.map_or("-".to_owned(), |p| format!("{p:?}")),
        status
            .version
            .or(vc.spec.kubernetes_version.clone())
            .unwrap_or_else(|| "-".to_owned()),
        vnest_api::label_pairs::selector(&vc.spec.node_pool.node_selector),
        age(vc.metadata.creation_timestamp.as_ref().map(|t| &t.0), now),
        status.expires_at.map_or("-".to_owned(), |t| {
            short_duration(t.0.as_second() - now.as_second())
        }),
    ];
    if wide {
        row.push(status.endpoint.unwrap_or_else(|| "-".to_owned()));
    }
    row
}

pub(crate) fn table(rows: &[Vec<String>], header: &[&str]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("   ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub(crate) async fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = args.connection.client().await?;
    let api: Api<VirtualCluster> = if args.all_namespaces {
        Api::all(client)
    } else {
        Api::namespaced(client, &args.namespace)
    };
    let clusters = api
        .list(&ListParams::default())
        .await
        .map_err(|e| explain(e, "listing VirtualClusters", &args.namespace))?
        .items;
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&clusters).context("rendering JSON")?
        ),
        Output::Yaml => print!(
            "{}",
            serde_yaml_ng::to_string(&clusters).context("rendering YAML")?
        ),
        Output::Table | Output::Wide => {
            if clusters.is_empty() {
                eprintln!(
                    "no VirtualClusters{}",
                    if args.all_namespaces {
                        String::new()
                    } else {
                        format!(" in namespace {}", args.namespace)
                    }
                );
                return Ok(ExitCode::SUCCESS);
            }
            let wide = args.output == Output::Wide;
            let now = Timestamp::now();
            let rows: Vec<Vec<String>> = clusters.iter().map(|vc| row(vc, now, wide)).collect();
            let mut header = vec![
                "NAMESPACE",
                "NAME",
                "PHASE",
                "VERSION",
                "POOL",
                "AGE",
                "EXPIRES IN",
            ];
            if wide {
                header.push("ENDPOINT");
            }
            println!("{}", table(&rows, &header));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectls() {
        assert_eq!(short_duration(5), "5s");
        assert_eq!(short_duration(600), "10m");
        assert_eq!(short_duration(7200), "2h");
        assert_eq!(short_duration(3 * 86400), "3d");
        assert_eq!(short_duration(-4), "0s");
    }

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["tenants".to_owned(), "a".to_owned()],
            vec!["x".to_owned(), "long-name".to_owned()],
        ];
        let out = table(&rows, &["NAMESPACE", "NAME"]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "NAMESPACE   NAME");
        assert_eq!(lines[2], "x           long-name");
    }
}

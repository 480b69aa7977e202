//! `vnest local list`.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::state::{self, Phase, is_alive, name_of};
use super::{ListArgs, Output};

#[derive(Debug, Serialize)]
struct Row {
    name: String,
    status: &'static str,
    server: Option<String>,
    age_seconds: Option<u64>,
    kubeconfig: Option<String>,
}

pub(crate) fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut rows = Vec::new();
    for plane in state::all()? {
        let state = plane.read().ok().flatten();
        let status = match &state {
            None => "Unknown",
            Some(s) if s.phase == Phase::Failed => "Failed",
            Some(s) if !is_alive(s.pid) => "Dead",
            Some(s) => match s.phase {
                Phase::Starting => "Starting",
                Phase::Running => "Running",
                Phase::Failed => "Failed",
                Phase::Stopping => "Stopping",
            },
        };
        rows.push(Row {
            name: name_of(&plane.dir),
            status,
            server: state.as_ref().and_then(|s| s.server.clone()),
            age_seconds: state.as_ref().map(|s| now.saturating_sub(s.started_at)),
            kubeconfig: state
                .as_ref()
                .and_then(|s| s.kubeconfig.as_ref())
                .map(|p| p.display().to_string()),
        });
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table if rows.is_empty() => {
            eprintln!("No local control planes. Start one with `vnest local up`.");
        }
        Output::Table => {
            let table: Vec<[String; 5]> = rows
                .iter()
                .map(|r| {
                    [
                        r.name.clone(),
                        r.status.to_owned(),
                        r.server.clone().unwrap_or_else(|| "-".into()),
                        r.age_seconds
                            .map(|s| humantime::format_duration(Duration::from_secs(s)).to_string())
                            .unwrap_or_else(|| "-".into()),
                        r.kubeconfig.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            print_table(["NAME", "STATUS", "SERVER", "AGE", "KUBECONFIG"], &table);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

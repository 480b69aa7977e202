//! Prints the CustomResourceDefinitions of vnest's types as YAML; the files
//! under `manifests/crd/` are its output, and a test fails when they are stale.

use std::process::ExitCode;

fn main() -> ExitCode {
    match vnest_api::crds_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: rendering the CRDs: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `vnest-syncer`, one per tenant: see `vnest_syncer::command`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vnest_syncer::command::main().await
}

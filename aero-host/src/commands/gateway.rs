//! `aero-host gateway` (the upload gateway until SIGINT/SIGTERM), `aero-host gateway token
//! create|revoke`, and the `[gateway]` step of `aero-host run`.

use crate::gateway_args::{GatewayAction, GatewayArgs, GatewayCommand, TokenAction};
use aero_gateway::{Db, Gateway, Settings};
use aero_plugin_host::storage::{open_storage, StoragePolicy, StorageSpec};
use aero_plugin_host::{LibrarySelection, PluginSet};
use anyhow::{anyhow, Context, Result};
use std::process::ExitCode;
use std::sync::Arc;

/// `aero-host gateway`.
pub fn command(cmd: GatewayCommand, libs: &LibrarySelection) -> Result<ExitCode> {
    let runtime = crate::runtime::runtime()?;
    match cmd.action {
        None => {
            let settings = cmd.args.resolve()?;
            let plugins = PluginSet::load(libs)?;
            runtime.block_on(run(&plugins, settings))?;
        }
        Some(GatewayAction::Token(action)) => runtime.block_on(token(action, &cmd.args))?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn open_db(database: &str, max_connections: u32) -> Result<Db> {
    Db::open(database, max_connections)
        .await
        .with_context(|| "opening the gateway database".to_string())
}

async fn token(action: TokenAction, args: &GatewayArgs) -> Result<()> {
    match action {
        TokenAction::Create { user, database } => {
            let db = open_db(&database.unwrap_or_else(|| args.database()), 1).await?;
            let made = aero_gateway::auth::new_token(&user).map_err(|e| anyhow!(e))?;
            db.insert_token(&made.stored).await?;
            eprintln!(
                "aero-host gateway: token {} created for user {user}; it is shown once, keep it secret",
                made.stored.id
            );
            println!("{}", made.token);
        }
        TokenAction::Revoke {
            user,
            token_id,
            database,
        } => {
            let db = open_db(&database.unwrap_or_else(|| args.database()), 1).await?;
            let n = db.revoke_tokens(&user, token_id.as_deref()).await?;
            if n == 0 {
                return Err(anyhow!("user {user} has no live token to revoke"));
            }
            println!("revoked {n} token(s) of user {user}");
        }
    }
    Ok(())
}

/// The bucket of `settings` as a storage, through the s3 backend plugin.
fn bucket_storage(
    plugins: &PluginSet,
    settings: &Settings,
) -> Result<Arc<aero_plugin_api::backend::Storage>> {
    let s3 = &settings.s3;
    let mut spec = StorageSpec {
        kind: "s3".into(),
        settings: Default::default(),
    };
    let mut set = |k: &str, v: &str| {
        spec.settings.insert(k.into(), v.into());
    };
    set("bucket", &s3.bucket);
    set("region", &s3.region);
    set("access_key_id", &s3.access_key_id);
    set("secret_access_key", &s3.secret_access_key);
    if let Some(e) = &s3.endpoint {
        set("endpoint", e);
    }
    if s3.force_path_style {
        set("force_path_style", "true");
    }
    if let Some(t) = &s3.session_token {
        set("session_token", t);
    }
    Ok(Arc::new(open_storage(
        plugins,
        &spec,
        StoragePolicy::default(),
    )?))
}

/// Runs the gateway until SIGINT/SIGTERM.
pub async fn run(plugins: &PluginSet, settings: Settings) -> Result<()> {
    if let Err(e) = &settings.cloudfront {
        eprintln!("aero-host gateway: warning: {e}; stream-url and the chunked routes answer 500 MISCONFIG");
    }
    let db = open_db(&settings.database, settings.db_max_connections).await?;
    let storage = bucket_storage(plugins, &settings)?;
    let addr = settings.listen_addr;
    let gateway =
        Gateway::new(settings, db, storage, plugins.formats().clone()).map_err(|e| anyhow!(e))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    // Tests and scripts read this line to learn the port.
    println!("listening on http://{local}");
    eprintln!("aero-host gateway: on http://{local}");
    aero_gateway::serve(listener, gateway, super::serve::shutdown_signal())
        .await
        .context("serving the gateway")?;
    Ok(())
}

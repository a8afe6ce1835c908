//! Image records and API tokens in SQLite (embedded, WAL) or PostgreSQL, through one set of
//! runtime-checked queries. Schema migrations are versioned and applied at start. Every update
//! of a record names the revision it read, so of two concurrent writers one wins and the other
//! gets [`DbError::Conflict`] (409), never a lost update.

use crate::record::{ImageRecord, JobState, State};
use aero_access::Visibility;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::time::Duration;

/// Errors of the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Another writer changed the record since it was read.
    #[error("image {0} was changed by another writer")]
    Conflict(String),
    /// The database failed.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// A database URL the gateway does not understand, or a stored value it cannot read.
    #[error("{0}")]
    Invalid(String),
}

/// Result of a database call.
pub type DbResult<T> = std::result::Result<T, DbError>;

/// The schema, one migration per version; applied in order, each once.
const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE images (
            id TEXT PRIMARY KEY,
            owner_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            state TEXT NOT NULL,
            failure_reason TEXT,
            version TEXT NOT NULL,
            upload_id TEXT,
            source_key TEXT NOT NULL,
            size_bytes BIGINT,
            etag TEXT,
            last_modified TEXT,
            disk_format TEXT,
            disk_size BIGINT,
            chunked_prefix TEXT,
            chunked_manifest_key TEXT,
            job_state TEXT NOT NULL,
            job_owner TEXT,
            job_lease_until BIGINT,
            job_attempts BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            revision BIGINT NOT NULL
        )",
            "CREATE INDEX images_by_owner ON images (owner_id, created_at)",
            "CREATE INDEX images_by_job ON images (job_state, job_lease_until)",
            "CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            revoked_at BIGINT
        )",
            "CREATE INDEX api_tokens_by_user ON api_tokens (user_id)",
        ],
    ),
    // Visibility, the ACL and share links (SPEC 5.2). Share links hold only the sha256 of
    // their token; `revoked_at` is the revoked flag (and when).
    (
        2,
        &[
            "ALTER TABLE images ADD COLUMN visibility TEXT NOT NULL DEFAULT 'private'",
            "CREATE TABLE image_acl (
                image_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                access TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (image_id, user_id)
            )",
            "CREATE TABLE share_links (
                id TEXT PRIMARY KEY,
                image_id TEXT NOT NULL,
                token_sha256 TEXT NOT NULL UNIQUE,
                expires_at BIGINT,
                revoked_at BIGINT,
                created_by TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )",
            "CREATE INDEX share_links_by_image ON share_links (image_id, created_at)",
        ],
    ),
];

/// The newest schema version.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// A stored API token (its secret only as a sha256).
#[derive(Debug, Clone)]
pub struct StoredToken {
    /// Public id (the token's first part).
    pub id: String,
    /// The user it authenticates.
    pub user_id: String,
    /// sha256 of the secret part, hex.
    pub secret_sha256: String,
}

/// The database.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: AnyPool,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The sqlx URL of a `database` setting: `postgres://…`/`postgresql://…` as is, `sqlite:…` as
/// is, anything else is a SQLite file path (created when missing).
fn sqlx_url(database: &str) -> DbResult<String> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        return Ok(database.to_string());
    }
    let path = database.strip_prefix("sqlite:").unwrap_or(database);
    let path = path.strip_prefix("//").unwrap_or(path);
    if path.is_empty() {
        return Err(DbError::Invalid(format!(
            "database '{database}' names no file: use sqlite:PATH or postgres://USER@HOST/DB"
        )));
    }
    if database.contains("://") && !database.starts_with("sqlite:") {
        return Err(DbError::Invalid(format!(
            "database '{database}' is neither sqlite:PATH nor a postgres:// URL"
        )));
    }
    if path.contains('?') {
        Ok(format!("sqlite:{path}"))
    } else {
        Ok(format!("sqlite:{path}?mode=rwc"))
    }
}

impl Db {
    /// Opens (and for SQLite creates) the database and applies missing migrations.
    pub async fn open(database: &str, max_connections: u32) -> DbResult<Db> {
        sqlx::any::install_default_drivers();
        let url = sqlx_url(database)?;
        let sqlite = url.starts_with("sqlite:");
        // The schema is settled on a connection of its own before the pool opens: a SQLite
        // connection that read the schema before a migration changed it would keep stale
        // column lists in its cached `SELECT *` statements.
        let setup = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await?;
        if sqlite {
            // WAL is a property of the file: set it once.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&setup)
                .await?;
            sqlx::query("PRAGMA busy_timeout=10000")
                .execute(&setup)
                .await?;
        }
        Db { pool: setup }.migrate().await?.pool.close().await;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        sqlx::query("PRAGMA busy_timeout=10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous=NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Db { pool })
    }

    /// Applies the migrations not yet recorded in `schema_migrations`; gives the database back.
    async fn migrate(self) -> DbResult<Self> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for (version, statements) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                continue;
            }
            for statement in *statements {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(self)
    }

    /// The applied schema version.
    pub async fn schema_version(&self) -> DbResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> DbResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Stores a new record.
    pub async fn insert(&self, rec: &ImageRecord) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO images (id, owner_id, kind, state, failure_reason, version, upload_id,
                source_key, size_bytes, etag, last_modified, disk_format, disk_size, chunked_prefix,
                chunked_manifest_key, job_state, job_owner, job_lease_until, job_attempts,
                created_at, updated_at, revision, visibility)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                $18, $19, $20, $21, $22, $23)",
        )
        .bind(&rec.id)
        .bind(&rec.owner_id)
        .bind(&rec.kind)
        .bind(rec.state.as_str())
        .bind(&rec.failure_reason)
        .bind(&rec.version)
        .bind(&rec.upload_id)
        .bind(&rec.source_key)
        .bind(rec.size_bytes)
        .bind(&rec.etag)
        .bind(&rec.last_modified)
        .bind(&rec.disk_format)
        .bind(rec.disk_size)
        .bind(&rec.chunked_prefix)
        .bind(&rec.chunked_manifest_key)
        .bind(rec.job_state.as_str())
        .bind(&rec.job_owner)
        .bind(rec.job_lease_until)
        .bind(rec.job_attempts)
        .bind(rec.created_at)
        .bind(rec.updated_at)
        .bind(rec.revision)
        .bind(rec.visibility.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes `rec` back if nobody changed it since it was read (same revision); on success its
    /// revision and `updated_at` advance, else [`DbError::Conflict`].
    pub async fn save(&self, rec: &mut ImageRecord) -> DbResult<()> {
        let updated_at = now_ms();
        let result = sqlx::query(
            "UPDATE images SET state = $1, failure_reason = $2, upload_id = $3, size_bytes = $4,
                etag = $5, last_modified = $6, disk_format = $7, disk_size = $8,
                chunked_prefix = $9, chunked_manifest_key = $10, job_state = $11, job_owner = $12,
                job_lease_until = $13, job_attempts = $14, updated_at = $15, revision = $16,
                visibility = $17
             WHERE id = $18 AND revision = $19",
        )
        .bind(rec.state.as_str())
        .bind(&rec.failure_reason)
        .bind(&rec.upload_id)
        .bind(rec.size_bytes)
        .bind(&rec.etag)
        .bind(&rec.last_modified)
        .bind(&rec.disk_format)
        .bind(rec.disk_size)
        .bind(&rec.chunked_prefix)
        .bind(&rec.chunked_manifest_key)
        .bind(rec.job_state.as_str())
        .bind(&rec.job_owner)
        .bind(rec.job_lease_until)
        .bind(rec.job_attempts)
        .bind(updated_at)
        .bind(rec.revision + 1)
        .bind(rec.visibility.as_str())
        .bind(&rec.id)
        .bind(rec.revision)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() != 1 {
            return Err(DbError::Conflict(rec.id.clone()));
        }
        rec.revision += 1;
        rec.updated_at = updated_at;
        Ok(())
    }

    /// The record `id`, if any.
    pub async fn get(&self, id: &str) -> DbResult<Option<ImageRecord>> {
        let row = sqlx::query("SELECT * FROM images WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// The records of `owner`, oldest first, without deleted ones, at most `limit`.
    pub async fn list(&self, owner: &str, limit: i64) -> DbResult<Vec<ImageRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM images WHERE owner_id = $1 AND state <> 'deleted'
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(owner)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Up to `limit` records whose conversion is queued and unclaimed (or whose claim lapsed
    /// before `now`).
    pub async fn claimable_jobs(&self, now: i64, limit: i64) -> DbResult<Vec<ImageRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM images WHERE job_state = 'queued'
                AND (job_lease_until IS NULL OR job_lease_until < $1)
             ORDER BY updated_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Stores a token (its secret only hashed).
    pub async fn insert_token(&self, token: &StoredToken) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, secret_sha256, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&token.id)
        .bind(&token.user_id)
        .bind(&token.secret_sha256)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The live (unrevoked) token with public id `id`.
    pub async fn live_token(&self, id: &str) -> DbResult<Option<StoredToken>> {
        let row = sqlx::query(
            "SELECT id, user_id, secret_sha256 FROM api_tokens WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredToken {
                id: r.try_get("id")?,
                user_id: r.try_get("user_id")?,
                secret_sha256: r.try_get("secret_sha256")?,
            })
        })
        .transpose()
    }

    /// Revokes the live tokens of `user` (only `token_id` when given); returns how many.
    pub async fn revoke_tokens(&self, user: &str, token_id: Option<&str>) -> DbResult<u64> {
        let result = match token_id {
            Some(id) => sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND id = $3 AND revoked_at IS NULL",
            )
            .bind(now_ms())
            .bind(user)
            .bind(id),
            None => sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now_ms())
            .bind(user),
        }
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}

fn from_row(r: &AnyRow) -> DbResult<ImageRecord> {
    let state: String = r.try_get("state")?;
    let visibility: String = r.try_get("visibility")?;
    let job_state: String = r.try_get("job_state")?;
    Ok(ImageRecord {
        id: r.try_get("id")?,
        owner_id: r.try_get("owner_id")?,
        kind: r.try_get("kind")?,
        state: State::parse(&state)
            .ok_or_else(|| DbError::Invalid(format!("unknown state '{state}' in the database")))?,
        failure_reason: r.try_get("failure_reason")?,
        version: r.try_get("version")?,
        upload_id: r.try_get("upload_id")?,
        source_key: r.try_get("source_key")?,
        size_bytes: r.try_get("size_bytes")?,
        etag: r.try_get("etag")?,
        last_modified: r.try_get("last_modified")?,
        disk_format: r.try_get("disk_format")?,
        disk_size: r.try_get("disk_size")?,
        chunked_prefix: r.try_get("chunked_prefix")?,
        chunked_manifest_key: r.try_get("chunked_manifest_key")?,
        job_state: JobState::parse(&job_state).ok_or_else(|| {
            DbError::Invalid(format!("unknown job state '{job_state}' in the database"))
        })?,
        job_owner: r.try_get("job_owner")?,
        job_lease_until: r.try_get("job_lease_until")?,
        job_attempts: r.try_get("job_attempts")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        revision: r.try_get("revision")?,
        visibility: Visibility::from_name(&visibility).ok_or_else(|| {
            DbError::Invalid(format!("unknown visibility '{visibility}' in the database"))
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of schema 1 with an image in it is migrated at open: the image becomes
    /// private, and the new tables work.
    #[tokio::test]
    async fn a_schema_1_database_is_migrated_and_its_images_become_private() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite:{}?mode=rwc",
            dir.path().join("old.sqlite").display()
        );
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for statement in MIGRATIONS[0].1 {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        sqlx::query("INSERT INTO schema_migrations VALUES (1, 0)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO images VALUES ('old', 'alice', 'disk', 'ready', NULL, 'v1', NULL, 'k',
                1, NULL, NULL, NULL, NULL, NULL, NULL, 'done', NULL, NULL, 0, 0, 0, 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;

        let db = Db::open(&url, 4).await.unwrap();
        assert_eq!(db.schema_version().await.unwrap(), SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 2);
        let rec = db.get("old").await.unwrap().unwrap();
        assert_eq!(rec.visibility, Visibility::Private);
        assert!(db.acl("old").await.unwrap().is_empty());
        assert!(db.links("old").await.unwrap().is_empty());
    }
}

//! Who besides the owner may use an image, as stored: the ACL (`image_acl`: a user with `read`
//! or `write`) and share links (`share_links`: only the sha256 of each token, an optional
//! expiry, the revoked flag `revoked_at`, who made it).

use crate::db::{now_ms, Db, DbError, DbResult};
use aero_access::share::TokenHash;
use aero_access::Role;
use sqlx::any::AnyRow;
use sqlx::Row;

/// What an ACL entry grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read (the matrix's shared-read).
    Read,
    /// Read and write (shared-write).
    Write,
}

impl Access {
    /// The stored and shown name: `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }

    /// Parses `read` or `write`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            _ => None,
        }
    }

    /// The role of the permission matrix it gives.
    pub fn role(self) -> Role {
        match self {
            Access::Read => Role::SharedRead,
            Access::Write => Role::SharedWrite,
        }
    }
}

/// One user of an image's ACL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    /// The user.
    pub user_id: String,
    /// What they may do.
    pub access: Access,
}

/// A stored share link (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareLink {
    /// Public id (for listing and revoking).
    pub id: String,
    /// The image it opens.
    pub image_id: String,
    /// sha256 of the token.
    pub token_hash: TokenHash,
    /// Expiry, ms since the epoch.
    pub expires_at: Option<i64>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<i64>,
    /// The user who made it.
    pub created_by: String,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
}

impl ShareLink {
    /// Whether it opens its image at `now` (ms): not revoked, not expired.
    pub fn live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

fn link_of(r: &AnyRow) -> DbResult<ShareLink> {
    let hash: String = r.try_get("token_sha256")?;
    Ok(ShareLink {
        id: r.try_get("id")?,
        image_id: r.try_get("image_id")?,
        token_hash: TokenHash::from_hex(&hash)
            .ok_or_else(|| DbError::Invalid("a share link's hash is not sha256 hex".into()))?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Db {
    /// The ACL of `image`, by user id.
    pub async fn acl(&self, image: &str) -> DbResult<Vec<AclEntry>> {
        let rows = sqlx::query(
            "SELECT user_id, access FROM image_acl WHERE image_id = $1 ORDER BY user_id",
        )
        .bind(image)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let access: String = r.try_get("access")?;
                Ok(AclEntry {
                    user_id: r.try_get("user_id")?,
                    access: Access::parse(&access).ok_or_else(|| {
                        DbError::Invalid(format!("unknown ACL access '{access}' in the database"))
                    })?,
                })
            })
            .collect()
    }

    /// What `user` may do by the ACL of `image`, if anything.
    pub async fn acl_access(&self, image: &str, user: &str) -> DbResult<Option<Access>> {
        let access: Option<String> =
            sqlx::query_scalar("SELECT access FROM image_acl WHERE image_id = $1 AND user_id = $2")
                .bind(image)
                .bind(user)
                .fetch_optional(&self.pool)
                .await?;
        Ok(access.as_deref().and_then(Access::parse))
    }

    /// Replaces the ACL of `image` by `entries`, at once.
    pub async fn replace_acl(&self, image: &str, entries: &[AclEntry]) -> DbResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM image_acl WHERE image_id = $1")
            .bind(image)
            .execute(&mut *tx)
            .await?;
        for e in entries {
            sqlx::query(
                "INSERT INTO image_acl (image_id, user_id, access, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(image)
            .bind(&e.user_id)
            .bind(e.access.as_str())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores a new share link.
    pub async fn insert_link(&self, link: &ShareLink) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO share_links (id, image_id, token_sha256, expires_at, revoked_at,
                created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&link.id)
        .bind(&link.image_id)
        .bind(link.token_hash.to_hex())
        .bind(link.expires_at)
        .bind(link.revoked_at)
        .bind(&link.created_by)
        .bind(link.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The share links of `image`, oldest first.
    pub async fn links(&self, image: &str) -> DbResult<Vec<ShareLink>> {
        let rows =
            sqlx::query("SELECT * FROM share_links WHERE image_id = $1 ORDER BY created_at, id")
                .bind(image)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(link_of).collect()
    }

    /// The link whose token hashes to `hash`, if any (the lookup is by the hash, so nothing
    /// about other tokens is learnt from it).
    pub async fn link_by_hash(&self, hash: &TokenHash) -> DbResult<Option<ShareLink>> {
        let row = sqlx::query("SELECT * FROM share_links WHERE token_sha256 = $1")
            .bind(hash.to_hex())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(link_of).transpose()
    }

    /// The link `id`, if any.
    pub async fn link(&self, id: &str) -> DbResult<Option<ShareLink>> {
        let row = sqlx::query("SELECT * FROM share_links WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(link_of).transpose()
    }

    /// Revokes link `id` of `image`; whether there was such a link (revoking twice is fine).
    pub async fn revoke_link(&self, image: &str, id: &str) -> DbResult<bool> {
        let result = sqlx::query(
            "UPDATE share_links SET revoked_at = COALESCE(revoked_at, $1)
             WHERE image_id = $2 AND id = $3",
        )
        .bind(now_ms())
        .bind(image)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}

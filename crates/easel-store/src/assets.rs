//! Asset rows. Blobs are written by the caller first (see the crate invariant).

use easel_core::asset::{Asset, AssetEdit, AssetKind, Privacy};
use easel_core::time::{self, from_millis};
use easel_core::{Error, Result};
use sqlx::any::AnyRow;

use crate::db::{db_err, get_i64, get_json, get_opt_i64, get_opt_str, get_str, Db, WriteTx};

const COLS: &str =
    "id, owner_id, job_id, output_index, kind, mime_type, width, height, bytes, sha256, metadata, parent_id, created_at, name, description, privacy, updated_at, hidden, root_id";

fn from_row(r: &AnyRow) -> Result<Asset> {
    let kind = get_str(r, "kind")?;
    Ok(Asset {
        id: get_str(r, "id")?,
        owner_id: get_str(r, "owner_id")?,
        job_id: get_opt_str(r, "job_id")?,
        output_index: get_opt_i64(r, "output_index")?.map(|v| v as u32),
        kind: AssetKind::parse(&kind)
            .ok_or_else(|| Error::internal(format!("bad asset kind {kind}")))?,
        mime_type: get_str(r, "mime_type")?,
        width: get_opt_i64(r, "width")?.map(|v| v as u32),
        height: get_opt_i64(r, "height")?.map(|v| v as u32),
        bytes: get_i64(r, "bytes")? as u64,
        sha256: get_str(r, "sha256")?,
        metadata: get_json(r, "metadata")?,
        parent_id: get_opt_str(r, "parent_id")?,
        root_id: get_opt_str(r, "root_id")?,
        name: get_opt_str(r, "name")?,
        description: get_opt_str(r, "description")?,
        privacy: {
            let p = get_str(r, "privacy")?;
            Privacy::parse(&p).ok_or_else(|| Error::internal(format!("bad privacy {p}")))?
        },
        hidden: get_i64(r, "hidden")? != 0,
        created_at: from_millis(get_i64(r, "created_at")?),
        updated_at: from_millis(get_i64(r, "updated_at")?),
    })
}

/// Insert a row; returns its lineage root, which the store sets: the parent's root, or the
/// parent when it has none or is gone (`a.root_id` is not read).
pub(crate) async fn insert_tx(tx: &mut WriteTx, a: &Asset) -> Result<Option<String>> {
    let row = sqlx::query(&format!(
        "INSERT INTO assets ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
         coalesce((SELECT p.root_id FROM assets p WHERE p.id = $12), $12)) RETURNING root_id"
    ))
    .bind(&a.id)
    .bind(&a.owner_id)
    .bind(a.job_id.clone())
    .bind(a.output_index.map(|v| v as i64))
    .bind(a.kind.as_str())
    .bind(&a.mime_type)
    .bind(a.width.map(|v| v as i64))
    .bind(a.height.map(|v| v as i64))
    .bind(a.bytes as i64)
    .bind(&a.sha256)
    .bind(a.metadata.to_string())
    .bind(a.parent_id.clone())
    .bind(time::to_millis(a.created_at))
    .bind(a.name.clone())
    .bind(a.description.clone())
    .bind(a.privacy.as_str())
    .bind(time::to_millis(a.updated_at))
    .bind(a.hidden as i64)
    .fetch_one(tx.conn())
    .await
    .map_err(db_err)?;
    crate::intents::clear_tx(tx, &a.id).await?;
    get_opt_str(&row, "root_id")
}

/// Insert one asset row (an upload) in its own transaction; returns its lineage root.
pub async fn insert(db: &Db, a: &Asset) -> Result<Option<String>> {
    insert_into(db, a, &[]).await
}

/// Insert one asset row and add it to `collections` (its owner's, checked by the caller) in
/// one transaction; returns its lineage root.
pub async fn insert_into(db: &Db, a: &Asset, collections: &[String]) -> Result<Option<String>> {
    let mut tx = db.begin().await?;
    let root = insert_tx(&mut tx, a).await?;
    crate::collections::add_all_tx(&mut tx, collections, &a.id, a.created_at).await?;
    tx.commit().await?;
    Ok(root)
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Asset>> {
    sqlx::query(&format!("SELECT {COLS} FROM assets WHERE id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_err)?
        .map(|r| from_row(&r))
        .transpose()
}

/// Which assets a list returns: an owner's, newest first, narrowed by the set filters.
#[derive(Debug, Clone, Default)]
pub struct AssetFilter {
    pub owner_id: String,
    /// Only assets older than this id (the cursor).
    pub before: Option<String>,
    /// Only assets with this id or a newer one (ids sort by creation time, so a time bound
    /// is an id: `easel_core::id::lower_bound`).
    pub since: Option<String>,
    /// Outputs of this job.
    pub job_id: Option<String>,
    /// Derived from this asset.
    pub parent_id: Option<String>,
    /// Whose lineage root is this asset.
    pub root_id: Option<String>,
    /// Record last edited at or after / before this time (unix ms).
    pub updated_after: Option<i64>,
    pub updated_before: Option<i64>,
    /// Outputs of jobs run by this model (registry name).
    pub model: Option<String>,
    /// Outputs of jobs of these tasks; `uploaded` in the list also takes uploaded images,
    /// `canvas` canvases. Empty: any.
    pub tasks: Vec<String>,
    /// Carrying any of these tags. Empty: any.
    pub tags: Vec<String>,
    /// Of this privacy only.
    pub privacy: Option<Privacy>,
    /// Hidden ones only (`true`), or visible ones only (`false`); `None`: both.
    pub hidden: Option<bool>,
    /// In this collection.
    pub collection_id: Option<String>,
    /// Whose text (name, description, prompt, tags) has every word of this, each as a word
    /// or the start of one, in the database's own text search (SQLite FTS5, PostgreSQL
    /// `tsvector`; no stemming on either; SQLite also ignores accents). Words are runs of
    /// letters and digits, on both sides; a text without any matches nothing.
    pub text: Option<String>,
    /// Also other owners' public assets (a search's `public`).
    pub with_public: bool,
    pub limit: u32,
}

/// The order of a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SearchOrder {
    /// Newest first (ids sort by creation time).
    #[default]
    CreatedDesc,
    CreatedAsc,
    UpdatedDesc,
    UpdatedAsc,
}

impl SearchOrder {
    fn sql(self) -> &'static str {
        match self {
            SearchOrder::CreatedDesc => "id DESC",
            SearchOrder::CreatedAsc => "id ASC",
            SearchOrder::UpdatedDesc => "updated_at DESC, id DESC",
            SearchOrder::UpdatedAsc => "updated_at ASC, id ASC",
        }
    }
}

/// The `WHERE` clause of a filter and its bound values (`$1` is the owner).
fn conditions(db: &Db, f: &AssetFilter) -> (String, Vec<String>) {
    let mut binds: Vec<String> = vec![f.owner_id.clone()];
    let mut sql = if f.with_public {
        " WHERE (owner_id = $1 OR privacy = 'public')".to_string()
    } else {
        " WHERE owner_id = $1".to_string()
    };
    // No sentinel for "no cursor": under a linguistic collation (PostgreSQL `en_US`, ICU)
    // punctuation such as `~` sorts before letters.
    let conds = [
        (" AND id < ", f.before.as_deref()),
        (" AND id >= ", f.since.as_deref()),
        (" AND job_id = ", f.job_id.as_deref()),
        (" AND parent_id = ", f.parent_id.as_deref()),
        (" AND root_id = ", f.root_id.as_deref()),
        (
            " AND job_id IN (SELECT id FROM jobs WHERE model = ",
            f.model.as_deref(),
        ),
    ];
    for (part, value) in conds {
        if let Some(v) = value {
            binds.push(v.to_string());
            sql.push_str(&format!("{part}${}", binds.len()));
            if part.contains('(') {
                sql.push(')');
            }
        }
    }
    if let Some(c) = &f.collection_id {
        binds.push(c.clone());
        sql.push_str(&format!(
            " AND id IN (SELECT item_id FROM collection_items WHERE kind = 'asset' AND collection_id = ${})",
            binds.len()
        ));
    }
    // Numbers, written into the SQL (PostgreSQL compares a text bind with no integer).
    if let Some(t) = f.updated_after {
        sql.push_str(&format!(" AND updated_at >= {t}"));
    }
    if let Some(t) = f.updated_before {
        sql.push_str(&format!(" AND updated_at < {t}"));
    }
    if let Some(p) = f.privacy {
        binds.push(p.as_str().to_string());
        sql.push_str(&format!(" AND privacy = ${}", binds.len()));
    }
    if let Some(h) = f.hidden {
        sql.push_str(&format!(" AND hidden = {}", h as i64));
    }
    if !f.tags.is_empty() {
        let mut marks = Vec::new();
        for t in &f.tags {
            binds.push(t.clone());
            marks.push(format!("${}", binds.len()));
        }
        // Tags are the owner's, and each asset's are its owner's.
        sql.push_str(&format!(
            " AND id IN (SELECT asset_id FROM asset_tags WHERE tag IN ({}){})",
            marks.join(", "),
            if f.with_public {
                ""
            } else {
                " AND owner_id = $1"
            }
        ));
    }
    if let Some(text) = &f.text {
        let (cond, bind) = crate::text_search::condition(
            db.backend,
            "asset_search",
            "asset_id",
            "id",
            text,
            binds.len() + 1,
        );
        binds.extend(bind);
        sql.push_str(&cond);
    }
    if !f.tasks.is_empty() {
        let mut alts = Vec::new();
        let mut tasks = Vec::new();
        for t in &f.tasks {
            if t == "uploaded" {
                alts.push("(job_id IS NULL AND kind = 'upload')".to_string());
            } else if t == "canvas" {
                alts.push("kind = 'canvas'".to_string());
            } else {
                binds.push(t.clone());
                tasks.push(format!("${}", binds.len()));
            }
        }
        if !tasks.is_empty() {
            alts.push(format!(
                "job_id IN (SELECT id FROM jobs WHERE task IN ({}))",
                tasks.join(", ")
            ));
        }
        sql.push_str(&format!(" AND ({})", alts.join(" OR ")));
    }
    (sql, binds)
}

/// The assets a filter selects, newest first.
pub async fn list(db: &Db, f: &AssetFilter) -> Result<Vec<Asset>> {
    let (cond, binds) = conditions(db, f);
    let sql = format!(
        "SELECT {COLS} FROM assets{cond} ORDER BY id DESC LIMIT {}",
        f.limit.clamp(1, 1000)
    );
    let rows = bound(&sql, &binds)
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(from_row).collect()
}

/// A query with its values bound in order.
fn bound<'q>(
    sql: &'q str,
    binds: &'q [String],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    binds
        .iter()
        .fold(sqlx::query(sql), |q, b| q.bind(b.as_str()))
}

/// A page of the assets a filter selects, in `order`, skipping `offset` (`f.before` and
/// `f.limit` as in [`list`]), and how many the filter selects in all.
pub async fn search(
    db: &Db,
    f: &AssetFilter,
    order: SearchOrder,
    offset: u32,
) -> Result<(Vec<Asset>, u64)> {
    let (cond, binds) = conditions(db, f);
    let sql = format!(
        "SELECT {COLS} FROM assets{cond} ORDER BY {} LIMIT {} OFFSET {offset}",
        order.sql(),
        f.limit.clamp(1, 1000)
    );
    let rows = bound(&sql, &binds)
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?;
    let count_sql = format!("SELECT COUNT(*) AS n FROM assets{cond}");
    let row = bound(&count_sql, &binds)
        .fetch_one(&db.pool)
        .await
        .map_err(db_err)?;
    let total = get_i64(&row, "n")? as u64;
    Ok((rows.iter().map(from_row).collect::<Result<_>>()?, total))
}

/// Several assets by id, in no particular order; unknown ids are left out.
pub async fn get_many(db: &Db, ids: &[&str]) -> Result<Vec<Asset>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT {COLS} FROM assets WHERE id IN ({})",
        marks.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&db.pool).await.map_err(db_err)?;
    rows.iter().map(from_row).collect()
}

/// Delete the row, recording an intent for its blob, which the caller then deletes with
/// `intents::remove` (a crash before that leaves the intent to the collector: never a row
/// without its blob, never a blob forgotten).
pub async fn delete(db: &Db, id: &str) -> Result<bool> {
    let mut tx = db.begin().await?;
    let row = sqlx::query("SELECT owner_id, job_id FROM assets WHERE id = $1")
        .bind(id)
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err)?;
    // A canvas locked by a live lock stays (the holder, or a forced unlock, ends it first).
    if let Some(lock) = crate::canvases::live_lock_tx(&mut tx, db, id, time::now()).await? {
        return Err(easel_core::canvas::locked(&lock, "lock_id"));
    }
    crate::canvases::forget_tx(&mut tx, id).await?;
    let job_id = match &row {
        Some(r) => {
            let owner = crate::db::get_str(r, "owner_id")?;
            // The blob outlives the row until the caller deletes it (`intents::remove`).
            crate::intents::record_tx(&mut tx, id, &easel_core::asset::blob_key(&owner, id))
                .await?;
            Some(crate::db::get_opt_str(r, "job_id")?)
        }
        None => None,
    };
    sqlx::query("DELETE FROM collection_items WHERE kind = 'asset' AND item_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    sqlx::query("DELETE FROM asset_tags WHERE asset_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    let n = sqlx::query("DELETE FROM assets WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?
        .rows_affected();
    // The job that made it no longer lists it: every dialect answers the outputs that exist.
    if let Some(Some(job_id)) = job_id {
        let sql = format!("SELECT outputs FROM jobs WHERE id = $1{}", db.for_update());
        let row = sqlx::query(&sql)
            .bind(&job_id)
            .fetch_optional(tx.conn())
            .await
            .map_err(db_err)?;
        if let Some(row) = row {
            let mut outputs: Vec<String> =
                serde_json::from_value(crate::db::get_json(&row, "outputs")?)
                    .map_err(|e| Error::internal(format!("bad outputs of job {job_id}: {e}")))?;
            outputs.retain(|o| o != id);
            sqlx::query("UPDATE jobs SET outputs = $1 WHERE id = $2")
                .bind(serde_json::to_string(&outputs).unwrap_or_else(|_| "[]".into()))
                .bind(&job_id)
                .execute(tx.conn())
                .await
                .map_err(db_err)?;
        }
    }
    tx.commit().await?;
    Ok(n > 0)
}

/// Change an asset's editable fields (`AssetEdit`, validated) and its `updated_at`; returns
/// the row as it is now, `None` when there is no such asset. Made private again after being
/// readable without a key, it records since when (`private_since`).
pub async fn edit(db: &Db, id: &str, e: &AssetEdit) -> Result<Option<Asset>> {
    let mut tx = db.begin().await?;
    let a = edit_tx(&mut tx, id, e, None).await?;
    tx.commit().await?;
    Ok(a)
}

/// `edit` in a transaction; `content` (bytes, hex SHA-256) also records a new content (a
/// canvas saved).
pub(crate) async fn edit_tx(
    tx: &mut WriteTx,
    id: &str,
    e: &AssetEdit,
    content: Option<(u64, &str)>,
) -> Result<Option<Asset>> {
    let blank = |v: &Option<String>| v.as_ref().map(|s| (!s.is_empty()).then(|| s.clone()));
    let now = time::to_millis(time::now());
    let mut sets = vec!["updated_at = $2".to_string()];
    let mut texts: Vec<Option<String>> = Vec::new();
    let mut set = |col: &str, v: Option<String>, sets: &mut Vec<String>| {
        texts.push(v);
        sets.push(format!("{col} = ${}", texts.len() + 2));
    };
    if let Some(v) = blank(&e.name) {
        set("name", v, &mut sets);
    }
    if let Some(v) = blank(&e.description) {
        set("description", v, &mut sets);
    }
    if let Some(p) = e.privacy {
        if p == Privacy::Private {
            sets.push(
                "private_since = CASE WHEN privacy <> 'private' THEN $2 ELSE private_since END"
                    .into(),
            );
        }
        set("privacy", Some(p.as_str().to_string()), &mut sets);
    }
    if let Some(h) = e.hidden {
        // A number, written into the SQL, as `bytes` below.
        sets.push(format!("hidden = {}", h as i64));
    }
    if let Some((bytes, sha256)) = content {
        set("sha256", Some(sha256.to_string()), &mut sets);
        // A number, written into the SQL (PostgreSQL compares a text bind with no integer).
        sets.push(format!("bytes = {bytes}"));
    }
    let sql = format!(
        "UPDATE assets SET {} WHERE id = $1 RETURNING {COLS}",
        sets.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(id).bind(now);
    for t in texts {
        q = q.bind(t);
    }
    let row = q.fetch_optional(tx.conn()).await.map_err(db_err)?;
    row.map(|r| from_row(&r)).transpose()
}

/// Since when (unix ms) a private asset is private again after having been readable without
/// a key; signed URLs issued before then are refused. `None`: never readable so, or gone.
pub async fn private_since(db: &Db, id: &str) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT private_since FROM assets WHERE id = $1 AND privacy = 'private'")
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_err)?;
    Ok(match row {
        Some(r) => get_opt_i64(&r, "private_since")?,
        None => None,
    })
}

/// Public assets of every owner, newest first, carrying any of `tags` when some are given
/// (reads without a key).
pub async fn list_public(
    db: &Db,
    before: Option<&str>,
    tags: &[String],
    limit: u32,
) -> Result<Vec<Asset>> {
    let mut sql = format!("SELECT {COLS} FROM assets WHERE privacy = 'public' AND hidden = 0");
    let mut binds: Vec<&str> = Vec::new();
    if let Some(b) = before {
        binds.push(b);
        sql.push_str(&format!(" AND id < ${}", binds.len()));
    }
    if !tags.is_empty() {
        let mut marks = Vec::new();
        for t in tags {
            binds.push(t);
            marks.push(format!("${}", binds.len()));
        }
        sql.push_str(&format!(
            " AND id IN (SELECT asset_id FROM asset_tags WHERE tag IN ({}))",
            marks.join(", ")
        ));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit.clamp(1, 1000)));
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    q.fetch_all(&db.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(from_row)
        .collect()
}

//! Tags on assets: `tags` holds each owner's tag names (first and last use), `asset_tags`
//! which assets carry them. Deleting an asset removes its tags in the same transaction
//! (`assets::delete`).

use std::collections::HashMap;

use easel_core::asset::TagCount;
use easel_core::time::{self, from_millis};
use easel_core::{Error, Result};

use crate::db::{db_err, get_i64, get_str, Db};

/// What a change did: the tags added and removed, and the asset's tags after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub added: Vec<String>,
    pub deleted: Vec<String>,
    pub tags: Vec<String>,
}

/// Add and remove tags of one asset of `owner_id`. `strict`: adding a tag it has, or
/// removing one it lacks, is a 409 and changes nothing; otherwise those are skipped. At most
/// `MAX_TAGS` tags per asset (422 on `add`). Tags must be valid (`check_tag`) already.
pub async fn change(
    db: &Db,
    owner_id: &str,
    asset_id: &str,
    add: &[String],
    delete: &[String],
    strict: bool,
) -> Result<Changed> {
    let mut tx = db.begin().await?;
    // The asset's row, locked: concurrent changes of one asset take turns (PostgreSQL; on
    // SQLite writers are serial already), and a deleted asset gets no tags.
    let sql = format!("SELECT id FROM assets WHERE id = $1{}", db.for_update());
    sqlx::query(&sql)
        .bind(asset_id)
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::not_found("asset"))?;
    let rows = sqlx::query("SELECT tag FROM asset_tags WHERE asset_id = $1")
        .bind(asset_id)
        .fetch_all(tx.conn())
        .await
        .map_err(db_err)?;
    let mut have: Vec<String> = rows
        .iter()
        .map(|r| get_str(r, "tag"))
        .collect::<Result<_>>()?;
    have.sort();
    let easel_core::asset::TagChange {
        after: mut tags,
        added,
        deleted,
    } = easel_core::asset::change_tags("asset", &have, add, delete, strict)?;
    let now = time::to_millis(time::now());
    for t in &added {
        sqlx::query(
            "INSERT INTO asset_tags (asset_id, owner_id, tag) VALUES ($1, $2, $3) \
             ON CONFLICT (asset_id, tag) DO NOTHING",
        )
        .bind(asset_id)
        .bind(owner_id)
        .bind(t)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    }
    for t in &deleted {
        sqlx::query("DELETE FROM asset_tags WHERE asset_id = $1 AND tag = $2")
            .bind(asset_id)
            .bind(t)
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
    }
    for t in added.iter().chain(&deleted) {
        sqlx::query(
            "INSERT INTO tags (owner_id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (owner_id, name) DO UPDATE SET updated_at = excluded.updated_at",
        )
        .bind(owner_id)
        .bind(t)
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    }
    tx.commit().await?;
    tags.sort();
    Ok(Changed {
        added,
        deleted,
        tags,
    })
}

/// The tags of these assets, each list sorted.
pub async fn of_assets(db: &Db, ids: &[&str]) -> Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT asset_id, tag FROM asset_tags WHERE asset_id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&db.pool).await.map_err(db_err)? {
            out.entry(get_str(&r, "asset_id")?)
                .or_default()
                .push(get_str(&r, "tag")?);
        }
    }
    // Sorted here, not by the database, whose collation may differ between backends.
    for tags in out.values_mut() {
        tags.sort();
    }
    Ok(out)
}

/// An owner's tags that some asset carries, by name, counting the assets their lists show
/// (hidden ones left out, as lists leave them).
pub async fn list(db: &Db, owner_id: &str) -> Result<Vec<TagCount>> {
    let rows = sqlx::query(
        "SELECT t.name, t.created_at, t.updated_at, COUNT(a.asset_id) AS n FROM tags t \
         JOIN asset_tags a ON a.owner_id = t.owner_id AND a.tag = t.name \
         JOIN assets x ON x.id = a.asset_id AND x.hidden = 0 \
         WHERE t.owner_id = $1 GROUP BY t.name, t.created_at, t.updated_at",
    )
    .bind(owner_id)
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    let mut list = rows
        .iter()
        .map(|r| {
            Ok(TagCount {
                name: get_str(r, "name")?,
                count: get_i64(r, "n")? as u64,
                created_at: from_millis(get_i64(r, "created_at")?),
                updated_at: from_millis(get_i64(r, "updated_at")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(list)
}

//! Collections: an owner's named sets of assets and models (`collection_items`, by kind).
//! Deleting an asset or a job's assets removes them from every collection in the same
//! transaction; deleting a collection keeps its items.

use easel_core::asset::Collection;
use easel_core::time::{self, from_millis};
use easel_core::{Error, Result};
use sqlx::any::AnyRow;

use crate::db::{db_err, get_i64, get_str, Db, WriteTx};

/// What a collection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Asset,
    Model,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Asset => "asset",
            Kind::Model => "model",
        }
    }
}

const SELECT: &str = "SELECT c.id, c.owner_id, c.name, c.created_at, c.updated_at, \
    (SELECT COUNT(*) FROM collection_items i JOIN assets x ON x.id = i.item_id \
     WHERE i.collection_id = c.id AND i.kind = 'asset' AND x.hidden = 0) AS assets, \
    (SELECT COUNT(*) FROM collection_items i WHERE i.collection_id = c.id AND i.kind = 'model') AS models \
    FROM collections c";

fn from_row(r: &AnyRow) -> Result<Collection> {
    Ok(Collection {
        id: get_str(r, "id")?,
        owner_id: get_str(r, "owner_id")?,
        name: get_str(r, "name")?,
        asset_count: get_i64(r, "assets")? as u64,
        model_count: get_i64(r, "models")? as u64,
        created_at: from_millis(get_i64(r, "created_at")?),
        updated_at: from_millis(get_i64(r, "updated_at")?),
    })
}

pub async fn create(db: &Db, owner_id: &str, name: &str) -> Result<Collection> {
    let id = easel_core::id::new(easel_core::id::COLLECTION);
    let now = time::to_millis(time::now());
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO collections (id, owner_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(&id)
    .bind(owner_id)
    .bind(name)
    .bind(now)
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    tx.commit().await?;
    get(db, &id)
        .await?
        .ok_or_else(|| Error::internal("a new collection is missing"))
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Collection>> {
    sqlx::query(&format!("{SELECT} WHERE c.id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_err)?
        .map(|r| from_row(&r))
        .transpose()
}

/// An owner's collections, newest first, older than `before` (the cursor).
pub async fn list(
    db: &Db,
    owner_id: &str,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<Collection>> {
    let mut sql = format!("{SELECT} WHERE c.owner_id = $1");
    if before.is_some() {
        sql.push_str(" AND c.id < $2");
    }
    sql.push_str(&format!(
        " ORDER BY c.id DESC LIMIT {}",
        limit.clamp(1, 1000)
    ));
    let mut q = sqlx::query(&sql).bind(owner_id);
    if let Some(b) = before {
        q = q.bind(b);
    }
    q.fetch_all(&db.pool)
        .await
        .map_err(db_err)?
        .iter()
        .map(from_row)
        .collect()
}

pub async fn rename(db: &Db, id: &str, name: &str) -> Result<Option<Collection>> {
    let mut tx = db.begin().await?;
    let n = sqlx::query("UPDATE collections SET name = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(name)
        .bind(time::to_millis(time::now()))
        .execute(tx.conn())
        .await
        .map_err(db_err)?
        .rows_affected();
    tx.commit().await?;
    if n == 0 {
        return Ok(None);
    }
    get(db, id).await
}

/// Delete a collection (its items stay where they are). Returns whether it existed.
pub async fn delete(db: &Db, id: &str) -> Result<bool> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM collection_items WHERE collection_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    let n = sqlx::query("DELETE FROM collections WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?
        .rows_affected();
    tx.commit().await?;
    Ok(n > 0)
}

/// Add and remove items of one kind (the caller checked they may). Adding what is there and
/// removing what is not are no-ops.
pub async fn change(
    db: &Db,
    id: &str,
    kind: Kind,
    add: &[String],
    remove: &[String],
) -> Result<()> {
    let now = time::to_millis(time::now());
    let mut tx = db.begin().await?;
    for item in add {
        add_tx(&mut tx, id, kind, item, now).await?;
    }
    for item in remove {
        sqlx::query(
            "DELETE FROM collection_items WHERE collection_id = $1 AND kind = $2 AND item_id = $3",
        )
        .bind(id)
        .bind(kind.as_str())
        .bind(item)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    }
    touch_tx(&mut tx, id, now).await?;
    tx.commit().await
}

/// Add one item in `tx` (a no-op when it is there), at `now` (unix ms); the caller moves the
/// collection's `updated_at` on (`touch_tx`).
pub(crate) async fn add_tx(
    tx: &mut WriteTx,
    id: &str,
    kind: Kind,
    item: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO collection_items (collection_id, kind, item_id, added_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (collection_id, kind, item_id) DO NOTHING",
    )
    .bind(id)
    .bind(kind.as_str())
    .bind(item)
    .bind(now)
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Add an asset to each of `collections` in `tx`, at `at` (a new asset's collections).
pub(crate) async fn add_all_tx(
    tx: &mut WriteTx,
    collections: &[String],
    asset_id: &str,
    at: easel_core::time::Timestamp,
) -> Result<()> {
    let now = time::to_millis(at);
    for c in collections {
        add_tx(tx, c, Kind::Asset, asset_id, now).await?;
        touch_tx(tx, c, now).await?;
    }
    Ok(())
}

/// The collection changed at `now` (unix ms), in `tx`.
pub(crate) async fn touch_tx(tx: &mut WriteTx, id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE collections SET updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    Ok(())
}

/// For each asset, the collections of its owner that hold it.
pub async fn of_own_assets(
    db: &Db,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, Vec<String>>> {
    by_item(db, None, ids, |marks| {
        format!(
            "SELECT i.item_id, i.collection_id FROM collection_items i \
             JOIN collections c ON c.id = i.collection_id \
             JOIN assets a ON a.id = i.item_id AND a.owner_id = c.owner_id \
             WHERE i.kind = 'asset' AND i.item_id IN ({marks})"
        )
    })
    .await
}

/// The ids of the collections holding each of these items.
pub async fn of_items(
    db: &Db,
    kind: Kind,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, Vec<String>>> {
    by_item(db, Some(kind.as_str()), ids, |marks| {
        format!(
            "SELECT item_id, collection_id FROM collection_items WHERE kind = $1 AND item_id IN ({marks})"
        )
    })
    .await
}

/// Item id → the ids of the collections holding it, sorted: `select` reads `item_id` and
/// `collection_id` for the ids bound at its marks (after `first`, bound as `$1` when given),
/// 500 ids a query.
async fn by_item(
    db: &Db,
    first: Option<&str>,
    ids: &[&str],
    select: impl Fn(&str) -> String,
) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    let from = 1 + usize::from(first.is_some());
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (from..from + chunk.len())
            .map(|i| format!("${i}"))
            .collect();
        let sql = select(&marks.join(", "));
        let mut q = sqlx::query(&sql);
        if let Some(f) = first {
            q = q.bind(f);
        }
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&db.pool).await.map_err(db_err)? {
            out.entry(get_str(&r, "item_id")?)
                .or_default()
                .push(get_str(&r, "collection_id")?);
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    Ok(out)
}

//! Ids that dialects give to Easel's objects: Leonardo's UUIDv4 generation, image and user
//! ids, and prediction ids a Replicate client chose. Each maps one way to an internal id
//! (`job_…`, `ast_…`, `usr_…`) within a namespace and an owner, and back: an internal id has
//! at most one external id per namespace.

use std::collections::HashMap;

use easel_core::{time, Result};

use crate::db::{db_err, get_str, Db, WriteTx};

/// The internal id that `external_id` names for `owner_id`.
pub async fn find(
    db: &Db,
    namespace: &str,
    owner_id: &str,
    external_id: &str,
) -> Result<Option<String>> {
    sqlx::query(
        "SELECT internal_id FROM external_ids WHERE namespace = $1 AND owner_id = $2 AND external_id = $3",
    )
    .bind(namespace)
    .bind(owner_id)
    .bind(external_id)
    .fetch_optional(&db.pool)
    .await
    .map_err(db_err)?
    .map(|r| get_str(&r, "internal_id"))
    .transpose()
}

pub(crate) async fn find_in(
    tx: &mut WriteTx,
    namespace: &str,
    owner_id: &str,
    external_id: &str,
) -> Result<Option<String>> {
    sqlx::query(
        "SELECT internal_id FROM external_ids WHERE namespace = $1 AND owner_id = $2 AND external_id = $3",
    )
    .bind(namespace)
    .bind(owner_id)
    .bind(external_id)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?
    .map(|r| get_str(&r, "internal_id"))
    .transpose()
}

/// Record a mapping inside a transaction. A taken external id (or an internal id that has
/// one in this namespace already) is a `Conflict`.
pub(crate) async fn insert_in(
    tx: &mut WriteTx,
    namespace: &str,
    owner_id: &str,
    external_id: &str,
    internal_id: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO external_ids (namespace, owner_id, external_id, internal_id, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(namespace)
    .bind(owner_id)
    .bind(external_id)
    .bind(internal_id)
    .bind(time::to_millis(time::now()))
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The external ids of these internal ids in a namespace (those that have one).
pub async fn of(
    db: &Db,
    namespace: &str,
    internal_ids: &[String],
) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for chunk in internal_ids.chunks(500) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT internal_id, external_id FROM external_ids WHERE namespace = $1 AND internal_id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(namespace);
        for id in chunk {
            q = q.bind(id);
        }
        for r in q.fetch_all(&db.pool).await.map_err(db_err)? {
            out.insert(get_str(&r, "internal_id")?, get_str(&r, "external_id")?);
        }
    }
    Ok(out)
}

/// The external id of `internal_id` in a namespace, made by `make` and recorded if it has
/// none yet (a concurrent caller's id wins; both get the same answer).
pub async fn get_or_assign(
    db: &Db,
    namespace: &str,
    owner_id: &str,
    internal_id: &str,
    make: impl FnOnce() -> String,
) -> Result<String> {
    let one = [internal_id.to_string()];
    if let Some(e) = of(db, namespace, &one).await?.remove(internal_id) {
        return Ok(e);
    }
    let mut tx = db.begin().await?;
    let r = insert_in(&mut tx, namespace, owner_id, &make(), internal_id).await;
    match r {
        Ok(()) => tx.commit().await?,
        Err(e) if e.kind == easel_core::ErrorKind::Conflict => drop(tx),
        Err(e) => return Err(e),
    }
    of(db, namespace, &one)
        .await?
        .remove(internal_id)
        .ok_or_else(|| easel_core::Error::internal("external id vanished"))
}

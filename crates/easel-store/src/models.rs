//! The models registry. A model's spec is stored as JSON; its name and aliases are rows of
//! `model_names`, so every name resolves to exactly one model.
//!
//! Fields added to `ModelSpec` need no migration: they are read with their serde defaults
//! from rows written before they existed (`icon`, the capabilities, `tool_types`).

use easel_core::model::{Model, ModelSpec};
use easel_core::time::{self, from_millis};
use easel_core::{Error, ErrorKind, Result};
use sqlx::any::AnyRow;

use crate::db::{db_err, get_i64, get_json, get_str, Db, WriteTx};

fn from_row(r: &AnyRow) -> Result<Model> {
    let spec: ModelSpec = serde_json::from_value(get_json(r, "spec")?)
        .map_err(|e| Error::internal(format!("bad model spec: {e}")))?;
    Ok(Model {
        id: get_str(r, "id")?,
        name: spec.name,
        aliases: spec.aliases,
        family: spec.family,
        tasks: spec.tasks,
        source: spec.source,
        provider: spec.provider,
        provider_config: spec.provider_config,
        provider_capabilities: spec.provider_capabilities,
        fallback_provider: spec.fallback_provider,
        fallback_provider_config: spec.fallback_provider_config,
        fallback_provider_capabilities: spec.fallback_provider_capabilities,
        defaults: spec.defaults,
        limits: spec.limits,
        icon: spec.icon,
        tool_types: spec.tool_types,
        recommended: spec.recommended,
        beta: spec.beta,
        tags: spec.tags,
        discovered: get_i64(r, "discovered")? != 0,
        created_at: from_millis(get_i64(r, "created_at")?),
        updated_at: from_millis(get_i64(r, "updated_at")?),
    })
}

/// A unique-name violation, said in terms of the model's name.
fn name_taken(e: sqlx::Error, name: &str) -> Error {
    let e = db_err(e);
    if e.kind == ErrorKind::Conflict {
        Error::new(
            ErrorKind::Conflict,
            format!("a model named `{name}` exists"),
        )
        .with_field("name")
    } else {
        e
    }
}

async fn set_names(tx: &mut WriteTx, id: &str, spec: &ModelSpec) -> Result<()> {
    sqlx::query("DELETE FROM model_names WHERE model_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    // A name repeated in the model's own list is not a conflict: keep its first occurrence.
    let mut names: Vec<&String> = Vec::new();
    for n in std::iter::once(&spec.name).chain(spec.aliases.iter()) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    for n in names {
        sqlx::query("INSERT INTO model_names (name, model_id) VALUES ($1, $2)")
            .bind(n)
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(|e| {
                let e = db_err(e);
                if e.kind == ErrorKind::Conflict {
                    Error::new(
                        ErrorKind::Conflict,
                        format!("the name `{n}` is already used by another model"),
                    )
                    .with_field(if *n == spec.name {
                        "name"
                    } else {
                        "aliases"
                    })
                } else {
                    e
                }
            })?;
    }
    Ok(())
}

pub async fn create(db: &Db, spec: &ModelSpec, discovered: bool) -> Result<Model> {
    spec.validate()?;
    let id = easel_core::id::new(easel_core::id::MODEL);
    let now = time::to_millis(time::now());
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO models (id, name, spec, discovered, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
        .bind(&id)
        .bind(&spec.name)
        .bind(serde_json::to_string(spec).unwrap_or_default())
        .bind(discovered as i64)
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(|e| name_taken(e, &spec.name))?;
    set_names(&mut tx, &id, spec).await?;
    tx.commit().await?;
    get(db, &id)
        .await?
        .ok_or_else(|| Error::internal("model vanished"))
}

pub async fn update(db: &Db, id: &str, spec: &ModelSpec) -> Result<Model> {
    spec.validate()?;
    let mut tx = db.begin().await?;
    let n = sqlx::query("UPDATE models SET name = $1, spec = $2, updated_at = $3 WHERE id = $4")
        .bind(&spec.name)
        .bind(serde_json::to_string(spec).unwrap_or_default())
        .bind(time::to_millis(time::now()))
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(|e| name_taken(e, &spec.name))?
        .rows_affected();
    if n == 0 {
        return Err(Error::not_found("model"));
    }
    set_names(&mut tx, id, spec).await?;
    tx.commit().await?;
    get(db, id).await?.ok_or_else(|| Error::not_found("model"))
}

pub async fn delete(db: &Db, id: &str) -> Result<bool> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM model_names WHERE model_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    sqlx::query("DELETE FROM collection_items WHERE kind = 'model' AND item_id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    let n = sqlx::query("DELETE FROM models WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?
        .rows_affected();
    tx.commit().await?;
    Ok(n > 0)
}

const COLS: &str = "m.id, m.spec, m.discovered, m.created_at, m.updated_at";

pub async fn get(db: &Db, id: &str) -> Result<Option<Model>> {
    sqlx::query(&format!("SELECT {COLS} FROM models m WHERE m.id = $1"))
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .map_err(db_err)?
        .map(|r| from_row(&r))
        .transpose()
}

/// Find a model by id, name or alias.
pub async fn resolve(db: &Db, name_or_id: &str) -> Result<Option<Model>> {
    if let Some(m) = get(db, name_or_id).await? {
        return Ok(Some(m));
    }
    sqlx::query(&format!(
        "SELECT {COLS} FROM models m JOIN model_names n ON n.model_id = m.id WHERE n.name = $1"
    ))
    .bind(name_or_id)
    .fetch_optional(&db.pool)
    .await
    .map_err(db_err)?
    .map(|r| from_row(&r))
    .transpose()
}

/// The ids of the models whose name, aliases, family, tasks or tags hold every word of
/// `text` (each as a word or the start of one: [`crate::text_search`]).
pub async fn search(db: &Db, text: &str) -> Result<Vec<String>> {
    let (cond, bind) =
        crate::text_search::condition(db.backend, "model_search", "model_id", "m.id", text, 1);
    let Some(bind) = bind else {
        return Ok(Vec::new());
    };
    let sql = format!("SELECT m.id FROM models m WHERE 1 = 1{cond}");
    let rows = sqlx::query(&sql)
        .bind(bind)
        .fetch_all(&db.pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(|r| get_str(r, "id")).collect()
}

/// All models by name; `skip`/`limit` page through them. Also returns the total count.
pub async fn list(db: &Db, skip: u32, limit: u32) -> Result<(Vec<Model>, u64)> {
    let rows = sqlx::query(&format!(
        "SELECT {COLS} FROM models m ORDER BY m.name LIMIT {} OFFSET {}",
        limit.clamp(1, 1000),
        skip
    ))
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    let count = sqlx::query("SELECT COUNT(*) AS n FROM models")
        .fetch_one(&db.pool)
        .await
        .map_err(db_err)?;
    Ok((
        rows.iter().map(from_row).collect::<Result<_>>()?,
        get_i64(&count, "n")? as u64,
    ))
}

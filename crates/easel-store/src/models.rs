//! The models registry. A model's spec is stored as JSON; its name and aliases are rows of
//! `model_names`, so every name resolves to exactly one model.
//!
//! A user's model (`owner_id` set) keeps its id in the `name` column and has no
//! `model_names` rows: it is found by id only, and its title (the spec's `name`) need not be
//! unique. Its presets are rows of `model_presets`, deleted with it.
//!
//! Fields added to `ModelSpec` need no migration: they are read with their serde defaults
//! from rows written before they existed (`icon`, the capabilities, `tool_types`).

use easel_core::model::{Model, ModelRecord, ModelSpec, Privacy};
use easel_core::preset::{Preset, PresetParams, PresetSpec, MAX_PRESETS};
use easel_core::time::{self, from_millis};
use easel_core::{Error, ErrorKind, Result};
use sqlx::any::AnyRow;

use crate::db::{db_err, get_i64, get_json, get_opt_str, get_str, Db, WriteTx};
use crate::Store;

fn from_row(r: &AnyRow) -> Result<Model> {
    let spec: ModelSpec = serde_json::from_value(get_json(r, "spec")?)
        .map_err(|e| Error::internal(format!("bad model spec: {e}")))?;
    let privacy = get_str(r, "privacy")?;
    Ok(Model::from_spec(
        spec,
        ModelRecord {
            id: get_str(r, "id")?,
            owner_id: get_opt_str(r, "owner_id")?,
            privacy: Privacy::parse(&privacy)
                .ok_or_else(|| Error::internal(format!("bad model privacy `{privacy}`")))?,
            discovered: get_i64(r, "discovered")? != 0,
            created_at: from_millis(get_i64(r, "created_at")?),
            updated_at: from_millis(get_i64(r, "updated_at")?),
        },
    ))
}

/// The spec as stored (its privacy lives in its own column).
fn stored(spec: &ModelSpec) -> String {
    serde_json::to_string(spec).unwrap_or_default()
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

/// Register a model of the server.
pub async fn create(db: &Db, spec: &ModelSpec, discovered: bool) -> Result<Model> {
    insert(db, spec, None, discovered).await
}

/// Register a model `owner` owns (a composition: [`ModelSpec::validate_as`]).
pub async fn create_owned(db: &Db, spec: &ModelSpec, owner: &str) -> Result<Model> {
    insert(db, spec, Some(owner), false).await
}

async fn insert(db: &Db, spec: &ModelSpec, owner: Option<&str>, discovered: bool) -> Result<Model> {
    let mut tx = db.begin().await?;
    let id = easel_core::id::new(easel_core::id::MODEL);
    insert_in(&mut tx, &id, spec, owner, discovered).await?;
    tx.commit().await?;
    get(db, &id)
        .await?
        .ok_or_else(|| Error::internal("model vanished"))
}

/// Insert the model `id` (a new id) in `tx`.
pub(crate) async fn insert_in(
    tx: &mut WriteTx,
    id: &str,
    spec: &ModelSpec,
    owner: Option<&str>,
    discovered: bool,
) -> Result<()> {
    spec.validate_as(owner.is_some())?;
    if spec
        .blob_key()
        .is_some_and(|k| k != easel_core::model::lora_blob_key(id))
    {
        return Err(Error::invalid(
            "source",
            "a user's LoRA is the blob named after its own id",
        ));
    }
    let id = id.to_string();
    let now = time::to_millis(time::now());
    let registry_name = if owner.is_some() { &id } else { &spec.name };
    sqlx::query(
        "INSERT INTO models (id, name, spec, discovered, owner_id, privacy, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&id)
    .bind(registry_name)
    .bind(stored(spec))
    .bind(discovered as i64)
    .bind(owner)
    .bind(spec.privacy.unwrap_or_default().as_str())
    .bind(now)
    .execute(tx.conn())
    .await
    .map_err(|e| name_taken(e, &spec.name))?;
    if owner.is_none() {
        set_names(tx, &id, spec).await?;
    }
    Ok(())
}

/// Replace a model's spec (and its privacy, when the spec gives one).
pub async fn update(db: &Db, id: &str, spec: &ModelSpec) -> Result<Model> {
    let Some(old) = get(db, id).await? else {
        return Err(Error::not_found("model"));
    };
    write(db, &old, spec, false).await
}

/// Replace the spec of `read`, a model as it was read, only if nobody changed it since
/// (its `updated_at`): an edit made of a read, a patch and a write loses no concurrent
/// edit — the second of two is a conflict, to be read and made again.
pub async fn update_from(db: &Db, read: &Model, spec: &ModelSpec) -> Result<Model> {
    write(db, read, spec, true).await
}

async fn write(db: &Db, old: &Model, spec: &ModelSpec, if_unchanged: bool) -> Result<Model> {
    let id = old.id.as_str();
    let owned = old.owner_id.is_some();
    spec.validate_as(owned)?;
    if owned && spec.source != old.source {
        return Err(Error::invalid(
            "source",
            "a user's model keeps its file (a LoRA's is set by its upload)",
        ));
    }
    if spec.base_model.is_some() && old.base_model.is_none() {
        refuse_if_based_on(db, id, "it cannot become a composition itself").await?;
    }
    let registry_name = if owned { id } else { &spec.name };
    let mut tx = db.begin().await?;
    // A write never moves `updated_at` back, and always moves it on: a read's stamp names
    // one version.
    let now = time::to_millis(time::now()).max(time::to_millis(old.updated_at) + 1);
    let n = sqlx::query(
        "UPDATE models SET name = $1, spec = $2, updated_at = $3, privacy = $4 \
         WHERE id = $5 AND (updated_at = $6 OR $7 = 0)",
    )
    .bind(registry_name)
    .bind(stored(spec))
    .bind(now)
    .bind(spec.privacy.unwrap_or(old.privacy).as_str())
    .bind(id)
    .bind(time::to_millis(old.updated_at))
    .bind(if_unchanged as i64)
    .execute(tx.conn())
    .await
    .map_err(|e| name_taken(e, &spec.name))?
    .rows_affected();
    if n == 0 {
        return Err(match get(db, id).await? {
            Some(_) => Error::new(
                ErrorKind::Conflict,
                "the model changed while this edit was made: read it and make the edit again",
            ),
            None => Error::not_found("model"),
        });
    }
    if !owned {
        set_names(&mut tx, id, spec).await?;
    }
    tx.commit().await?;
    get(db, id).await?.ok_or_else(|| Error::not_found("model"))
}

/// Give a user's model to another user (its presets go with it).
pub async fn transfer(db: &Db, id: &str, to_user: &str) -> Result<Model> {
    let mut tx = db.begin().await?;
    let n = sqlx::query(
        "UPDATE models SET owner_id = $1, updated_at = $2 WHERE id = $3 AND owner_id IS NOT NULL",
    )
    .bind(to_user)
    .bind(time::to_millis(time::now()))
    .bind(id)
    .execute(tx.conn())
    .await
    .map_err(db_err)?
    .rows_affected();
    if n == 0 {
        return Err(Error::not_found("model"));
    }
    tx.commit().await?;
    get(db, id).await?.ok_or_else(|| Error::not_found("model"))
}

/// A new model `owner` owns, made of `spec` (as [`create_owned`]), with copies of `from`'s
/// presets (`owner` their author), in one transaction.
pub async fn copy(db: &Db, from: &str, spec: &ModelSpec, owner: &str) -> Result<Model> {
    let presets = presets(db, from).await?;
    let mut tx = db.begin().await?;
    let id = easel_core::id::new(easel_core::id::MODEL);
    insert_in(&mut tx, &id, spec, Some(owner), false).await?;
    let now = time::to_millis(time::now());
    for p in presets {
        insert_preset(
            &mut tx,
            &id,
            owner,
            &p.name,
            p.task.as_deref(),
            &p.params,
            p.is_default,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    get(db, &id)
        .await?
        .ok_or_else(|| Error::internal("model vanished"))
}

/// How many compositions run the model `id` (their `base_model`).
pub async fn compositions_of(db: &Db, id: &str) -> Result<u64> {
    let sql = match db.backend {
        crate::db::Backend::Sqlite => {
            "SELECT COUNT(*) AS n FROM models \
             WHERE json_valid(spec) AND json_extract(spec, '$.base_model') = $1"
        }
        crate::db::Backend::Postgres => {
            "SELECT COUNT(*) AS n FROM models WHERE (spec::jsonb ->> 'base_model') = $1"
        }
    };
    let row = sqlx::query(sql)
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .map_err(db_err)?;
    Ok(get_i64(&row, "n")? as u64)
}

/// A conflict while compositions run the model `id`.
async fn refuse_if_based_on(db: &Db, id: &str, what: &str) -> Result<()> {
    match compositions_of(db, id).await? {
        0 => Ok(()),
        n => Err(Error::new(
            ErrorKind::Conflict,
            format!("{n} composition(s) run this model: {what}"),
        )),
    }
}

/// Remove a model, its names and presets, and its file when it is a blob of the store (a
/// user's LoRA: an intent recorded in the delete's transaction, the blob deleted after the
/// commit, the collector's if that fails). Refused (409) while compositions run it.
pub async fn delete(store: &Store, id: &str) -> Result<bool> {
    let db = &store.db;
    refuse_if_based_on(db, id, "delete or change them first").await?;
    let mut tx = db.begin().await?;
    let blob = sqlx::query(&format!(
        "SELECT {COLS} FROM models m WHERE m.id = $1{}",
        db.for_update()
    ))
    .bind(id)
    .fetch_optional(tx.conn())
    .await
    .map_err(db_err)?
    .map(|r| from_row(&r))
    .transpose()?
    .and_then(|m| m.blob_key().map(str::to_string));
    if let Some(key) = &blob {
        crate::intents::record_tx(&mut tx, id, key).await?;
    }
    for sql in [
        "DELETE FROM model_names WHERE model_id = $1",
        "DELETE FROM model_presets WHERE model_id = $1",
        "DELETE FROM collection_items WHERE kind = 'model' AND item_id = $1",
    ] {
        sqlx::query(sql)
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(db_err)?;
    }
    let n = sqlx::query("DELETE FROM models WHERE id = $1")
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?
        .rows_affected();
    tx.commit().await?;
    if let Some(key) = blob {
        if let Err(e) = crate::intents::remove(store, &[(id.to_string(), key)]).await {
            tracing::warn!(error = %e, model = id, "a deleted model's file is left to the collector");
        }
    }
    Ok(n > 0)
}

const COLS: &str = "m.id, m.spec, m.discovered, m.owner_id, m.privacy, m.created_at, m.updated_at";

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

/// The model that runs a job's model (`job.model`: a name, alias or id): the model itself,
/// or a composition's base.
pub async fn resolve_run(db: &Db, name_or_id: &str) -> Result<Option<Model>> {
    match resolve(db, name_or_id).await? {
        Some(Model {
            base_model: Some(base),
            ..
        }) => get(db, &base).await,
        m => Ok(m),
    }
}

/// The ids of the models whose name (a user's model's title), aliases, family, tasks, tags,
/// short description or description hold every word of
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

/// Which models a list holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// The server's models (no owner): the registry.
    Server,
    /// The server's models and `user`'s own.
    For(&'a str),
    /// `user`'s own.
    OwnedBy(&'a str),
    /// Every user's `public` models, and the server's `public` ones.
    Public,
    /// Every model (admins).
    All,
}

impl Scope<'_> {
    /// The condition (with `$1` bound to the user where there is one).
    fn condition(self) -> (&'static str, Option<String>) {
        match self {
            Scope::Server => ("m.owner_id IS NULL", None),
            Scope::For(u) => ("(m.owner_id IS NULL OR m.owner_id = $1)", Some(u.into())),
            Scope::OwnedBy(u) => ("m.owner_id = $1", Some(u.into())),
            Scope::Public => ("m.privacy = 'public'", None),
            Scope::All => ("1 = 1", None),
        }
    }
}

/// The models of `scope` by registry name (a user's model's is its id); `skip`/`limit` page
/// through them. Also returns the total count.
pub async fn list(db: &Db, scope: Scope<'_>, skip: u32, limit: u32) -> Result<(Vec<Model>, u64)> {
    let (cond, user) = scope.condition();
    let sql = format!(
        "SELECT {COLS} FROM models m WHERE {cond} ORDER BY m.name LIMIT {} OFFSET {}",
        limit.clamp(1, 1000),
        skip
    );
    let mut q = sqlx::query(&sql);
    if let Some(u) = &user {
        q = q.bind(u);
    }
    let rows = q.fetch_all(&db.pool).await.map_err(db_err)?;
    let count_sql = format!("SELECT COUNT(*) AS n FROM models m WHERE {cond}");
    let mut q = sqlx::query(&count_sql);
    if let Some(u) = &user {
        q = q.bind(u);
    }
    let count = q.fetch_one(&db.pool).await.map_err(db_err)?;
    Ok((
        rows.iter().map(from_row).collect::<Result<_>>()?,
        get_i64(&count, "n")? as u64,
    ))
}

fn preset_row(r: &AnyRow) -> Result<Preset> {
    let params: PresetParams = serde_json::from_value(get_json(r, "params")?)
        .map_err(|e| Error::internal(format!("bad preset params: {e}")))?;
    Ok(Preset {
        id: get_str(r, "id")?,
        model_id: get_str(r, "model_id")?,
        author_id: get_str(r, "author_id")?,
        name: get_str(r, "name")?,
        task: get_opt_str(r, "task")?,
        params,
        is_default: get_i64(r, "is_default")? != 0,
        created_at: from_millis(get_i64(r, "created_at")?),
        updated_at: from_millis(get_i64(r, "updated_at")?),
    })
}

const PRESET_COLS: &str =
    "id, model_id, author_id, name, task, params, is_default, created_at, updated_at";

/// A model's presets, oldest first.
pub async fn presets(db: &Db, model_id: &str) -> Result<Vec<Preset>> {
    let rows = sqlx::query(&format!(
        "SELECT {PRESET_COLS} FROM model_presets WHERE model_id = $1 ORDER BY created_at, id"
    ))
    .bind(model_id)
    .fetch_all(&db.pool)
    .await
    .map_err(db_err)?;
    rows.iter().map(preset_row).collect()
}

/// One of a model's presets, by id or (the first of that) name.
pub async fn preset(db: &Db, model_id: &str, id_or_name: &str) -> Result<Option<Preset>> {
    Ok(presets(db, model_id)
        .await?
        .into_iter()
        .find(|p| p.id == id_or_name || p.name == id_or_name))
}

#[allow(clippy::too_many_arguments)]
async fn insert_preset(
    tx: &mut WriteTx,
    model_id: &str,
    author: &str,
    name: &str,
    task: Option<&str>,
    params: &PresetParams,
    is_default: bool,
    now: i64,
) -> Result<String> {
    let id = easel_core::id::new(easel_core::id::PRESET);
    if is_default {
        clear_default(tx, model_id).await?;
    }
    sqlx::query(&format!(
        "INSERT INTO model_presets ({PRESET_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
    ))
    .bind(&id)
    .bind(model_id)
    .bind(author)
    .bind(name)
    .bind(task)
    .bind(serde_json::to_string(params).unwrap_or_default())
    .bind(is_default as i64)
    .bind(now)
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    Ok(id)
}

async fn clear_default(tx: &mut WriteTx, model_id: &str) -> Result<()> {
    sqlx::query("UPDATE model_presets SET is_default = 0 WHERE model_id = $1")
        .bind(model_id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Add a preset to a model (`spec.name` required; at most [`MAX_PRESETS`] per model). A
/// default preset takes over from the model's earlier default.
pub async fn create_preset(
    db: &Db,
    model_id: &str,
    author: &str,
    spec: &PresetSpec,
) -> Result<Preset> {
    let name = spec
        .name
        .as_deref()
        .ok_or_else(|| Error::invalid("name", "required"))?;
    let mut tx = db.begin().await?;
    let n = sqlx::query("SELECT COUNT(*) AS n FROM model_presets WHERE model_id = $1")
        .bind(model_id)
        .fetch_one(tx.conn())
        .await
        .map_err(db_err)?;
    if get_i64(&n, "n")? as u64 >= MAX_PRESETS {
        return Err(Error::invalid(
            "name",
            format!("a model has at most {MAX_PRESETS} presets"),
        ));
    }
    let id = insert_preset(
        &mut tx,
        model_id,
        author,
        name,
        spec.task.as_deref(),
        &spec.params.clone().unwrap_or_default(),
        spec.is_default.unwrap_or(false),
        time::to_millis(time::now()),
    )
    .await?;
    tx.commit().await?;
    preset(db, model_id, &id)
        .await?
        .ok_or_else(|| Error::internal("preset vanished"))
}

/// Change a preset's fields that `spec` gives (the preset by id).
pub async fn update_preset(db: &Db, model_id: &str, id: &str, spec: &PresetSpec) -> Result<Preset> {
    let found = presets(db, model_id)
        .await?
        .into_iter()
        .find(|p| p.id == id);
    let Some(mut p) = found else {
        return Err(Error::not_found("preset"));
    };
    if let Some(n) = &spec.name {
        p.name = n.clone();
    }
    if spec.task.is_some() {
        p.task = spec.task.clone();
    }
    if let Some(params) = &spec.params {
        p.params = params.clone();
    }
    let mut tx = db.begin().await?;
    if let Some(d) = spec.is_default {
        if d {
            clear_default(&mut tx, model_id).await?;
        }
        p.is_default = d;
    }
    sqlx::query(
        "UPDATE model_presets SET name = $1, task = $2, params = $3, is_default = $4, \
         updated_at = $5 WHERE id = $6 AND model_id = $7",
    )
    .bind(&p.name)
    .bind(&p.task)
    .bind(serde_json::to_string(&p.params).unwrap_or_default())
    .bind(p.is_default as i64)
    .bind(time::to_millis(time::now()))
    .bind(id)
    .bind(model_id)
    .execute(tx.conn())
    .await
    .map_err(db_err)?;
    tx.commit().await?;
    Ok(p)
}

/// Remove a preset; `false` when the model has none with that id.
pub async fn delete_preset(db: &Db, model_id: &str, id: &str) -> Result<bool> {
    let mut tx = db.begin().await?;
    let n = sqlx::query("DELETE FROM model_presets WHERE id = $1 AND model_id = $2")
        .bind(id)
        .bind(model_id)
        .execute(tx.conn())
        .await
        .map_err(db_err)?
        .rows_affected();
    tx.commit().await?;
    Ok(n > 0)
}

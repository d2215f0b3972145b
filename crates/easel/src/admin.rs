//! Admin commands that work on the data folder or database directly (no server needed).

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use easel_api::server::{self, Config};
use easel_core::auth::Role;
use easel_core::model::ModelSpec;
use easel_core::JobStatus;
use easel_store::Store;

use crate::config::{read_file_config, StoreArgs};

/// The data folder: the flag (or `EASEL_DATA_DIR`), else `easel.toml`, else `./easel-data`.
fn data_dir(args: &StoreArgs) -> Result<PathBuf> {
    let file = read_file_config(args.config.as_deref())?;
    Ok(args
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| "easel-data".into()))
}

async fn open(args: &StoreArgs) -> Result<(Store, Config)> {
    let file = read_file_config(args.config.as_deref())?;
    let mut cfg = Config::embedded(data_dir(args)?);
    cfg.database_url = args.database_url.clone().or(file.database_url);
    cfg.store_url = args.store_url.clone().or(file.store_url);
    let store = server::open_store(&cfg).await.map_err(|e| anyhow!("{e}"))?;
    Ok((store, cfg))
}

fn err(e: easel_core::Error) -> anyhow::Error {
    anyhow!("{e}")
}

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    cmd: KeysCmd,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key (for a new user unless --user-id is given); prints it once.
    Create {
        /// Label of the key.
        #[arg(long, default_value = "default")]
        name: String,
        /// Add the key to this existing user.
        #[arg(long)]
        user_id: Option<String>,
        /// Name of the new user (default: the key's label).
        #[arg(long)]
        user_name: Option<String>,
        /// Role of a new user: `user` (the default) or `admin`.
        #[arg(long)]
        role: Option<String>,
    },
    /// List keys (never their secrets), with the user each belongs to.
    List,
    /// List users (names are unique).
    Users,
    /// Revoke a key by id.
    Revoke { id: String },
}

pub async fn keys(a: KeysArgs) -> Result<()> {
    let (store, _) = open(&a.store).await?;
    let db = &store.db;
    match a.cmd {
        KeysCmd::Create {
            name,
            user_id,
            user_name,
            role,
        } => {
            let user = match user_id {
                Some(id) => easel_store::users::get_user(db, &id)
                    .await
                    .map_err(err)?
                    .ok_or_else(|| anyhow!("no user {id}"))?,
                None => {
                    let role = role
                        .map(|r| {
                            Role::parse(&r)
                                .ok_or_else(|| anyhow!("--role must be `user` or `admin`"))
                        })
                        .transpose()?;
                    let user_name = user_name.as_deref().unwrap_or(&name);
                    easel_core::auth::check_user_name("--user-name", user_name).map_err(err)?;
                    // A user of that name gets another key; otherwise the user is created.
                    match easel_store::users::user_by_name(db, user_name)
                        .await
                        .map_err(err)?
                    {
                        Some(u) if role.is_some_and(|r| r != u.role) => bail!(
                            "the user `{user_name}` exists with role {}; leave out --role or pick another --user-name",
                            u.role.as_str()
                        ),
                        Some(u) => u,
                        None => easel_store::users::create_user(db, user_name, role.unwrap_or(Role::User))
                            .await
                            .map_err(err)?,
                    }
                }
            };
            let (info, key) = easel_store::users::create_key(db, &user.id, &name, None)
                .await
                .map_err(err)?;
            let secret = easel_core::auth::split_key(&key).map_or("", |(_, s)| s);
            println!(
                "key id:  {}\nuser:    {} ({}, {})\nAPI key: {key}\nas a pair (Basic auth, Scenario's api_key/api_secret):\n  api_key:    {}\n  api_secret: {secret}",
                info.id,
                user.name,
                user.id,
                user.role.as_str(),
                info.id,
            );
        }
        KeysCmd::List => {
            println!(
                "{:<32} {:<10} {:<6} {:<20} {:<14} STATUS",
                "ID", "USER", "ROLE", "NAME", "PREFIX"
            );
            for k in easel_store::users::list_keys(db).await.map_err(err)? {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<32} {:<10} {:<6} {:<20} {:<14} {status}",
                    k.id,
                    k.user_name,
                    k.role.as_str(),
                    k.name,
                    k.prefix
                );
            }
        }
        KeysCmd::Users => {
            println!("{:<32} {:<6} {:<24} NAME", "ID", "ROLE", "CREATED");
            for u in easel_store::users::list_users(db).await.map_err(err)? {
                println!(
                    "{:<32} {:<6} {:<24} {}",
                    u.id,
                    u.role.as_str(),
                    u.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    u.name
                );
            }
        }
        KeysCmd::Revoke { id } => {
            if !easel_store::users::revoke_key(db, &id).await.map_err(err)? {
                bail!("no active key {id}");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    cmd: ModelsCmd,
}

#[derive(Subcommand)]
enum ModelsCmd {
    /// List registered models.
    List,
    /// Register a model.
    Add {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Local path or hub repository id.
        #[arg(long)]
        source: Option<String>,
        /// Family: sd15, sd2, sdxl, sd15-inpaint, …
        #[arg(long, default_value = "unknown")]
        family: String,
        /// Tasks it can do (repeatable): txt2img, img2img, inpaint, …
        #[arg(long = "task")]
        tasks: Vec<String>,
        /// Other names (repeatable).
        #[arg(long = "alias")]
        aliases: Vec<String>,
        /// Provider: local, openai, replicate, easel.
        #[arg(long, default_value = "local")]
        provider: String,
    },
    /// Remove a model by id, name or alias.
    Remove { name: String },
    /// Register the models found under <data-dir>/models/.
    Scan,
    /// Download a model from the Hugging Face hub into <data-dir>/models/: a diffusers
    /// folder (only what Easel loads, .safetensors weights only) or, with --file, a
    /// single-file checkpoint.
    Pull(crate::pull::PullArgs),
    /// Write a tiny model with random weights, in the layout real models use (for tests
    /// and demos): a diffusers folder; with --single-file also `<dir>-single-file.safetensors`
    /// beside it, in the original LDM / A1111 key layout; with --lora also a rank-4 LoRA of
    /// its UNet and text encoder attention, `<dir>-lora.safetensors`, in the diffusers, PEFT
    /// or kohya key layout.
    MakeTiny {
        /// The folder to write (created; must not exist).
        dir: std::path::PathBuf,
        /// A family of the engine's table: sd15, sd15-inpaint (or inpaint), sd2, sdxl, sana.
        #[arg(long, default_value = "sd15")]
        family: String,
        /// Also write the weights as one single-file checkpoint beside the folder.
        #[arg(long)]
        single_file: bool,
        /// Also write a LoRA for the model beside the folder, in this key layout: diffusers,
        /// peft or kohya.
        #[arg(long, value_name = "LAYOUT")]
        lora: Option<String>,
        /// Also write the family's tiny autoencoder (TAESD) where the engine looks for it:
        /// `vae_approx/<taesd name>` beside the folder (kept if one is there).
        #[arg(long)]
        tiny_vae: bool,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

/// Rank of the LoRA `make-tiny --lora` writes.
const TINY_LORA_RANK: usize = 4;

fn make_tiny(
    dir: &std::path::Path,
    family: &str,
    single_file: bool,
    lora: Option<&str>,
    tiny_vae: bool,
    seed: u64,
) -> Result<()> {
    let fam = easel_diffusion::family::parse(family)?;
    let taesd = match (tiny_vae, fam.tiny_vae) {
        (false, _) => None,
        (true, None) => anyhow::bail!("{} models have no tiny autoencoder", fam.label),
        (true, Some(name)) => Some(
            dir.parent()
                .unwrap_or(std::path::Path::new("."))
                .join(easel_diffusion::taesd::FOLDER)
                .join(name),
        ),
    };
    let sd = easel_diffusion::sd::Variant::ALL
        .iter()
        .any(|v| v.family() == fam);
    if (single_file || lora.is_some()) && !sd {
        anyhow::bail!(
            "--single-file and --lora write Stable Diffusion layouts; {} models are folders only",
            fam.label
        );
    }
    let layout: Option<easel_diffusion::sd::tiny::LoraLayout> = lora.map(str::parse).transpose()?;
    if dir.exists() {
        anyhow::bail!("{} exists; choose a new folder", dir.display());
    }
    (fam.make_tiny)(dir, seed).map_err(|e| anyhow::anyhow!("writing {}: {e}", dir.display()))?;
    println!("{} ({}, random weights)", dir.display(), fam.id);
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("tiny")
        .to_string();
    if single_file {
        let file = dir.with_file_name(format!("{name}-single-file.safetensors"));
        easel_diffusion::sd::single_file::write_single_file(dir, &file)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))?;
        println!(
            "{} (single file; its tokenizer comes from the folder)",
            file.display()
        );
    }
    if let Some(layout) = layout {
        let file = dir.with_file_name(format!("{name}-lora.safetensors"));
        easel_diffusion::sd::tiny::make_tiny_lora(dir, &file, layout, TINY_LORA_RANK, seed)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))?;
        println!(
            "{} (LoRA, {layout} layout, rank {TINY_LORA_RANK})",
            file.display()
        );
    }
    if let Some(t) = taesd {
        if t.exists() {
            println!("{} (tiny autoencoder, kept)", t.display());
        } else {
            easel_diffusion::taesd::make_tiny(&t, fam.latent_channels, seed)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", t.display()))?;
            println!("{} (tiny autoencoder, random weights)", t.display());
        }
    }
    Ok(())
}

pub async fn models(a: ModelsArgs) -> Result<()> {
    // `pull` needs the data folder only, not the database.
    let cmd = match a.cmd {
        ModelsCmd::Pull(p) => return crate::pull::run(p, &data_dir(&a.store)?).await,
        ModelsCmd::MakeTiny {
            dir,
            family,
            single_file,
            lora,
            tiny_vae,
            seed,
        } => return make_tiny(&dir, &family, single_file, lora.as_deref(), tiny_vae, seed),
        cmd => cmd,
    };
    let (store, cfg) = open(&a.store).await?;
    let db = &store.db;
    match cmd {
        ModelsCmd::List => {
            let (models, count) =
                easel_store::models::list(db, easel_store::models::Scope::All, 0, 1000)
                    .await
                    .map_err(err)?;
            println!(
                "{:<24} {:<14} {:<10} {:<28} SOURCE",
                "NAME", "FAMILY", "PROVIDER", "TASKS"
            );
            for m in models {
                println!(
                    "{:<24} {:<14} {:<10} {:<28} {}",
                    m.name,
                    m.family,
                    m.provider,
                    m.tasks.join(","),
                    m.source.unwrap_or_default()
                );
            }
            println!(
                "({})",
                if count == 1 {
                    "1 model".to_string()
                } else {
                    format!("{count} models")
                }
            );
        }
        ModelsCmd::Add {
            name,
            source,
            family,
            tasks,
            aliases,
            provider,
        } => {
            let spec: ModelSpec = serde_json::from_value(serde_json::json!({
                "name": name, "source": source, "family": family, "tasks": tasks,
                "aliases": aliases, "provider": provider,
            }))?;
            let m = easel_store::models::create(db, &spec, false)
                .await
                .map_err(err)?;
            println!("registered {} ({})", m.name, m.id);
        }
        ModelsCmd::Remove { name } => {
            let m = easel_store::models::resolve(db, &name)
                .await
                .map_err(err)?
                .ok_or_else(|| anyhow!("no model {name}"))?;
            easel_store::models::delete(&store, &m.id)
                .await
                .map_err(err)?;
            println!("removed {}", m.name);
        }
        ModelsCmd::Scan => {
            let n = easel_providers::discover::scan(db, &cfg.data_dir.join("models"))
                .await
                .map_err(err)?;
            println!(
                "registered or updated {n} model{}",
                if n == 1 { "" } else { "s" }
            );
        }
        ModelsCmd::Pull(_) | ModelsCmd::MakeTiny { .. } => unreachable!("handled above"),
    }
    Ok(())
}

#[derive(Args)]
pub struct JobsArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    cmd: JobsCmd,
}

#[derive(Subcommand)]
enum JobsCmd {
    /// List jobs, newest first.
    List {
        /// queued, running, succeeded, failed or canceled.
        #[arg(long)]
        status: Option<String>,
        /// Only this owner's (user id).
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show one job as JSON, with its status history.
    Show { id: String },
    /// Cancel a job (queued: at once; running: at its next step).
    Cancel { id: String },
}

pub async fn jobs(a: JobsArgs) -> Result<()> {
    let (store, _) = open(&a.store).await?;
    let db = &store.db;
    match a.cmd {
        JobsCmd::List {
            status,
            owner,
            limit,
        } => {
            let status = match status {
                Some(s) => Some(JobStatus::parse(&s).ok_or_else(|| {
                    let known: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                    anyhow!("unknown status `{s}`; use one of: {}", known.join(", "))
                })?),
                None => None,
            };
            let f = easel_store::jobs::JobFilter {
                owner_id: owner,
                status,
                tasks: Vec::new(),
                before: None,
                limit,
                ..Default::default()
            };
            println!(
                "{:<30} {:<10} {:<10} {:<9} {:<24} OWNER",
                "ID", "TASK", "STATUS", "PROGRESS", "CREATED"
            );
            for j in easel_store::jobs::list(db, &f).await.map_err(err)? {
                println!(
                    "{:<30} {:<10} {:<10} {:<9} {:<24} {}",
                    j.id,
                    j.task,
                    j.status.as_str(),
                    format!("{:.0}%", j.progress * 100.0),
                    j.created_at.format("%Y-%m-%d %H:%M:%S"),
                    j.owner_id
                );
            }
        }
        JobsCmd::Show { id } => {
            let j = easel_store::jobs::get(db, &id)
                .await
                .map_err(err)?
                .ok_or_else(|| anyhow!("no job {id}"))?;
            let history = easel_store::jobs::history(db, &id).await.map_err(err)?;
            let mut v = serde_json::to_value(&j)?;
            v["history"] = serde_json::to_value(history)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        JobsCmd::Cancel { id } => {
            let j = easel_store::jobs::request_cancel(db, &id, None)
                .await
                .map_err(err)?;
            if j.status.is_terminal() {
                println!("{} is {}", j.id, j.status.as_str());
            } else {
                println!("{} will stop at its next step", j.id);
            }
        }
    }
    Ok(())
}

//! `GET /v1/options`: what a client needs to build a request form without hard-coding the
//! server's rules: the model families with their defaults, the scheduler names, the tasks
//! and every limit a request is checked against. It is read from the same tables and
//! configuration the validation uses, so it is the one place a UI (ours included) learns
//! them.

use axum::extract::State;
use easel_core::generate::{MAX_SEED, MIN_SIDE, SIZE_MULTIPLE};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::error::ApiResult;
use crate::AppState;

#[derive(Serialize, ToSchema)]
pub struct Options {
    pub families: Vec<FamilyOption>,
    /// Scheduler names accepted in `scheduler`: the diffusers class names, then the short
    /// names (A1111/ComfyUI style). Matching is loose (case, `-`, `_`, spaces).
    pub schedulers: Vec<&'static str>,
    /// Every task a job may name.
    pub tasks: Vec<&'static str>,
    pub limits: LimitOptions,
}

/// A model family the local engine runs, with what a request that leaves a field out gets.
#[derive(Serialize, ToSchema)]
pub struct FamilyOption {
    pub id: &'static str,
    pub label: &'static str,
    /// Default width and height.
    pub natural_size: u32,
    pub steps: u32,
    pub guidance: f64,
    /// Whether `pag_guidance` (perturbed-attention guidance) applies.
    pub pag: bool,
    pub tasks: Vec<&'static str>,
    /// Whether a tiny autoencoder (TAESD) is installed for the family in the models folder's
    /// `vae_approx/`: then `decoder: taesd` works and previews are decoded with it.
    pub tiny_vae: bool,
}

/// The limits of a request on this server (its configuration).
#[derive(Serialize, ToSchema)]
pub struct LimitOptions {
    /// Generated widths and heights: at least `min_side`, a multiple of `size_multiple`, and
    /// `width × height` at most `max_gen_pixels`.
    pub min_side: u32,
    pub size_multiple: u32,
    pub max_gen_pixels: u64,
    /// Longest side of any image, input or output.
    pub max_side: u32,
    /// Largest image, input or output, in pixels.
    pub max_pixels: u64,
    pub max_steps: u32,
    /// Images per generation job.
    pub max_images: u32,
    pub max_prompt_chars: usize,
    pub max_seed: u64,
    /// Largest request body, in bytes (also of each part of an upload in parts).
    pub max_body_bytes: usize,
    /// Largest file sent as an upload in parts (`POST /v1/uploads`), in bytes.
    pub max_upload_bytes: u64,
}

/// The families, schedulers, tasks and limits requests are checked against.
#[utoipa::path(get, path = "/v1/options", tag = "models",
    responses((status = 200, body = Options)), security(("bearer" = [])))]
pub async fn get(State(state): State<AppState>, _: Auth) -> ApiResult<axum::Json<Options>> {
    let families = easel_providers::family::FAMILIES
        .iter()
        .map(|f| FamilyOption {
            id: f.id,
            label: f.label,
            natural_size: f.natural_size,
            steps: f.default_steps,
            guidance: f.default_guidance,
            pag: f.pag,
            tasks: f.tasks.to_vec(),
            tiny_vae: f
                .tiny_vae
                .is_some_and(|n| easel_providers::find_tiny_vae(&state.models_dir, n).is_some()),
        })
        .collect();
    // The diffusers class names and the short names; not the names one dialect sends
    // (Stability's `K_*`, Leonardo's), which its own table maps.
    let mut seen = std::collections::HashSet::new();
    let schedulers: Vec<&'static str> = easel_core::scheduler::SCHEDULER_NAMES
        .iter()
        .filter(|n| matches!(n.source, "diffusers" | "comfyui" | "a1111" | "easel"))
        .map(|n| n.name)
        .filter(|n| seen.insert(*n))
        .collect();
    let l = &state.limits;
    Ok(axum::Json(Options {
        families,
        schedulers,
        tasks: easel_core::task::TASKS.to_vec(),
        limits: LimitOptions {
            min_side: MIN_SIDE,
            size_multiple: SIZE_MULTIPLE,
            max_gen_pixels: l.gen_pixels(),
            max_side: l.max_side,
            max_pixels: l.max_pixels,
            max_steps: l.max_steps,
            max_images: l.max_images,
            max_prompt_chars: l.max_prompt_chars,
            max_seed: MAX_SEED,
            max_body_bytes: l.max_body_bytes,
            max_upload_bytes: l.max_upload_bytes,
        },
    }))
}

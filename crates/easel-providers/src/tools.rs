//! The local image tools provider: upscale, resize, pixelate and convert, run by
//! `easel-imageops` on a blocking thread. Steps: load the input, process, encode.

use bytes::Bytes;
use easel_core::asset::blob_key;
use easel_core::limits::Limits;
use easel_core::task::{self, Filter, Fit, OutputFormat, TaskInput};
use easel_core::{Error, Job};
use easel_imageops as ops;
use easel_queue::{OutputImage, RunContext, RunError, RunOutput};
use easel_store::Store;

/// Tasks this provider runs.
pub const TASKS: &[&str] = &["upscale", "resize", "pixelate", "convert"];

pub async fn run(
    store: &Store,
    limits: &Limits,
    job: &Job,
    ctx: &RunContext,
) -> Result<RunOutput, RunError> {
    let input = TaskInput::parse(&job.task, job.input.clone(), limits)?;
    let image_id = input.image().unwrap_or_default().to_string();
    let asset = easel_store::assets::get(&store.db, &image_id)
        .await?
        .filter(|a| a.owner_id == job.owner_id)
        .ok_or_else(|| Error::invalid("input.image", format!("asset {image_id} not found")))?;
    let bytes = store
        .blobs
        .get(&blob_key(&asset.owner_id, &asset.id))
        .await?;
    ctx.step(1, 3)?;
    let limits = limits.clone();
    let ctx2 = ctx.clone();
    let params = serde_json::json!({"task": job.task, "model": job.model, "input": job.input});
    let (encoded, width, height, format) =
        tokio::task::spawn_blocking(move || process(&bytes, &input, &limits, &params, &ctx2))
            .await
            .map_err(|e| Error::internal(format!("image task panicked: {e}")))??;
    ctx.step(3, 3)?;
    Ok(RunOutput {
        usage_units: easel_core::usage::image_units(&[(width, height)]),
        outputs: vec![OutputImage {
            bytes: Bytes::from(encoded),
            mime_type: format.mime().to_string(),
            width,
            height,
            metadata: serde_json::json!({"task": job.task, "input": job.input}),
            parent_id: Some(image_id),
        }],
        provider: "local".to_string(),
    })
}

fn ops_err(e: ops::OpsError) -> RunError {
    let field = match &e {
        ops::OpsError::InvalidParam { field, .. } => format!("input.{field}"),
        _ => "input.image".to_string(),
    };
    match e {
        ops::OpsError::Encode(m) => Error::internal(format!("encoding failed: {m}")).into(),
        e => Error::invalid(field, e.to_string()).into(),
    }
}

fn process(
    bytes: &[u8],
    input: &TaskInput,
    limits: &Limits,
    params: &serde_json::Value,
    ctx: &RunContext,
) -> Result<(Vec<u8>, u32, u32, OutputFormat), RunError> {
    let img = ops::decode(bytes, limits.max_pixels).map_err(ops_err)?;
    input.check_output_size(img.width(), img.height(), limits)?;
    ctx.check()?;
    let out = match input {
        TaskInput::Upscale(i) => {
            let target = match (i.factor, i.width, i.height) {
                (Some(f), _, _) => ops::ScaleTarget::Factor(f),
                (None, Some(w), Some(h)) => ops::ScaleTarget::Size {
                    width: w,
                    height: h,
                },
                (None, Some(w), None) => ops::ScaleTarget::Width(w),
                (None, None, Some(h)) => ops::ScaleTarget::Height(h),
                (None, None, None) => ops::ScaleTarget::Factor(1.0),
            };
            ops::upscale(&img, target, limits.max_pixels).map_err(ops_err)?
        }
        TaskInput::Resize(i) => {
            let (w, h) = input.output_size(img.width(), img.height());
            let filter = match i.filter.unwrap_or(Filter::Lanczos3) {
                Filter::Nearest => ops::Filter::Nearest,
                Filter::Bilinear => ops::Filter::Bilinear,
                Filter::CatmullRom => ops::Filter::CatmullRom,
                Filter::Lanczos3 => ops::Filter::Lanczos3,
            };
            match i.fit.unwrap_or(Fit::Contain) {
                Fit::Cover => ops::resize_fit(&img, w, h, ops::Fit::Cover, filter),
                Fit::Contain | Fit::Exact => ops::resize(&img, w, h, filter),
            }
            .map_err(ops_err)?
        }
        TaskInput::Pixelate(i) => {
            let palette = match (&i.palette, i.palette_size) {
                (Some(colors), _) => ops::Palette::Colors(
                    colors
                        .iter()
                        .filter_map(|c| task::parse_hex_color(c))
                        .collect(),
                ),
                (None, Some(n)) => ops::Palette::Size(n),
                (None, None) => ops::Palette::Keep,
            };
            let p = ops::PixelateParams {
                grid_size: i.grid_size,
                palette,
                remove_noise: i.remove_noise,
            };
            ops::pixelate(&img, &p).map_err(ops_err)?
        }
        TaskInput::Convert(_) => img,
        TaskInput::Txt2img(_) | TaskInput::Img2img(_) | TaskInput::Inpaint(_) => {
            return Err(Error::invalid("task", "not an image tool").into())
        }
    };
    ctx.step(2, 3)?;
    let (format, quality) = input.output();
    let enc = crate::encoding(format, quality);
    let text = vec![("easel".to_string(), params.to_string())];
    let encoded = ops::encode(&out, &enc, &text).map_err(ops_err)?;
    Ok((encoded, out.width(), out.height(), format))
}

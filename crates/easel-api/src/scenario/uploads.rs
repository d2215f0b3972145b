//! Uploads: Scenario's three operations on the core's uploads in parts (`service::
//! create_upload`, `complete_upload`, `import_upload`). `POST /uploads` announces a file
//! (`fileName`, `fileSize`, `contentType`, `parts`, `kind`) and answers a signed URL on
//! this server for each part (`PUT` the bytes there, no key needed); `POST
//! /uploads/{id}/action {"action": "complete"}` joins them into an asset (`entityId`). A
//! file that is not a valid image fails the upload (`status: failed`, `errorMessage`), as
//! Scenario reports a failed validation. The kinds `image`, `asset` and `avatar` make an
//! image asset; `model` a LoRA (a `.safetensors` file of LoRA weights) that becomes a private
//! model of the uploader's (`entityId` its `model_…` id; `concepts[{modelId}]` applies it).
//! `url` imports under the server's fetch policy: an image at once, a model's file in the
//! background (`validating`, then `complete` or `failed`: poll the upload);
//! `huggingFaceModelName` (`owner/repo`) imports the repository's LoRA file from the hub in
//! the background (`source: huggingface`). 3D, audio and video files and Civitai pages
//! answer 400 naming the field.

use easel_core::upload::{Upload, UploadKind, UploadOptions, UploadSpec, UploadStatus};

use super::*;

/// The fields of an upload request, as (Scenario's name, the core's).
const FIELDS: &[(&str, &str)] = &[
    ("fileName", "file_name"),
    ("fileSize", "file_size"),
    ("contentType", "content_type"),
    ("parts", "parts"),
    ("assetOptions.collectionIds", "collection_ids"),
    ("assetOptions.parentId", "parent_id"),
];

fn wire(e: Error) -> Error {
    error::renamed(e, FIELDS)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioUploadOptions)]
pub(super) struct AssetOptions {
    #[serde(default)]
    hide: Option<bool>,
    #[serde(default)]
    collection_ids: Option<Vec<String>>,
    #[serde(default)]
    parent_id: Option<String>,
}

/// `POST /uploads`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ScenarioUploadRequest)]
pub(super) struct UploadRequest {
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    file_size: Option<f64>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    civitai_model_url: Option<String>,
    #[serde(default)]
    hugging_face_model_name: Option<String>,
    #[serde(default)]
    parts: Option<f64>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    asset_options: Option<AssetOptions>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ScenarioUploadPart)]
pub(super) struct PartView {
    number: u32,
    expires: String,
    url: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioUploadAssetOptions)]
pub(super) struct AssetOptionsView {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    collection_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ScenarioUpload)]
pub(super) struct UploadView {
    id: String,
    file_name: String,
    original_file_name: String,
    parts_count: u32,
    kind: &'static str,
    status: &'static str,
    source: &'static str,
    author_id: String,
    owner_id: String,
    file_size: u64,
    content_type: String,
    parts: Vec<PartView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    asset_options: AssetOptionsView,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize, ToSchema)]
#[schema(as = ScenarioUploadOne)]
pub(super) struct UploadOne {
    upload: UploadView,
}

fn view(state: &AppState, u: Upload) -> UploadOne {
    let parts = service::part_urls(state, &u)
        .into_iter()
        .map(|p| PartView {
            number: p.number,
            expires: ids::time(&p.expires),
            url: p.url,
        })
        .collect();
    let hub = u.from_hub();
    UploadOne {
        upload: UploadView {
            file_name: u.asset_name().to_string(),
            original_file_name: u.file_name.clone(),
            parts_count: u.parts_count,
            kind: match u.kind {
                UploadKind::Image => "image",
                UploadKind::Lora => "model",
            },
            status: u.status.as_str(),
            source: match &u.source_url {
                None => "multipart",
                Some(_) if hub => "huggingface",
                Some(_) => "url",
            },
            author_id: u.owner_id.clone(),
            owner_id: u.owner_id,
            file_size: u.file_size,
            content_type: u.content_type,
            parts,
            entity_id: u
                .asset_id
                .as_deref()
                .map(ids::asset)
                .or_else(|| u.model_id.as_deref().map(ids::model)),
            error_message: u.error,
            url: u.source_url.filter(|_| !hub),
            asset_options: AssetOptionsView {
                collection_ids: u
                    .options
                    .collection_ids
                    .iter()
                    .map(|c| ids::collection(c))
                    .collect(),
                parent_id: u.options.parent_id.as_deref().map(ids::asset),
            },
            created_at: ids::time(&u.created_at),
            updated_at: ids::time(&u.updated_at),
            id: u.id,
        },
    }
}

/// A whole number of the request (`fileSize`, `parts`: JSON numbers), or 400 naming it.
fn whole(field: &str, v: Option<f64>) -> Result<u64, Error> {
    match v {
        None => Err(Error::invalid(field, "required for an upload in parts")),
        Some(n) if n.fract() == 0.0 && (0.0..=9.0e15).contains(&n) => Ok(n as u64),
        Some(_) => Err(Error::invalid(
            field,
            "must be a whole number, not negative",
        )),
    }
}

fn required(field: &str, v: Option<String>) -> Result<String, Error> {
    v.ok_or_else(|| Error::invalid(field, "required for an upload in parts"))
}

/// `POST /uploads`: announce an upload in parts, or import from `url`.
#[utoipa::path(post, path = "/scenario/v1/uploads", tag = "scenario", request_body = UploadRequest,
    responses((status = 200, body = UploadOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn create(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(body): Json<UploadRequest>,
) -> Result<axum::Json<UploadOne>, Failure> {
    if body.civitai_model_url.is_some() {
        return Err(Error::invalid(
            "civitaiModelUrl",
            "Easel does not import from Civitai: give the file's download URL as `url` (kind \
             model), or upload the LoRA's .safetensors file in parts",
        )
        .into());
    }
    // "No need to setup other fields": a hub import is a model's.
    let hub = body.hugging_face_model_name.is_some();
    let kind = match body.kind.as_deref() {
        None if hub => UploadKind::Lora,
        None => return Err(Error::invalid("kind", "required: image or model").into()),
        Some("image" | "asset" | "avatar") if hub => {
            return Err(Error::invalid(
                "kind",
                "a huggingFaceModelName import makes a model (kind model)",
            )
            .into())
        }
        Some("image" | "asset" | "avatar") => UploadKind::Image,
        Some("model") => UploadKind::Lora,
        Some(k) => {
            return Err(Error::invalid(
                "kind",
                format!(
                    "Easel stores images and LoRAs: kind `{k}` is not accepted (use image or model)"
                ),
            )
            .into())
        }
    };
    if hub && body.url.is_some() {
        return Err(Error::invalid("url", "give a url or a huggingFaceModelName, not both").into());
    }
    if kind == UploadKind::Lora && body.asset_options.is_some() {
        return Err(Error::invalid(
            "assetOptions",
            "not available for kind model (a model is not an asset)",
        )
        .into());
    }
    let opts = body.asset_options.unwrap_or(AssetOptions {
        hide: None,
        collection_ids: None,
        parent_id: None,
    });
    let collection_ids = ids::collections_in(
        "assetOptions.collectionIds",
        opts.collection_ids.as_deref().unwrap_or_default(),
    )?;
    let parent_id = match opts.parent_id {
        None => None,
        Some(p) => Some(ids::asset_in(&p).ok_or_else(|| {
            Error::invalid("assetOptions.parentId", format!("asset {p} not found"))
        })?),
    };
    let options = UploadOptions {
        name: None,
        parent_id,
        collection_ids,
        hidden: opts.hide == Some(true),
    };
    let u = if let Some(repo) = body.hugging_face_model_name {
        let from = service::ImportFrom::Hub {
            repo,
            revision: None,
            file: None,
        };
        // The hub's checks name the repository (`….repo`): Scenario's one field.
        service::import_upload(&state, &who, "huggingFaceModelName", from, kind, options)
            .await
            .map_err(|e| match e.field.as_deref() {
                Some(f) if f.starts_with("huggingFaceModelName") => {
                    e.with_field("huggingFaceModelName")
                }
                _ => wire(e),
            })?
    } else if let Some(url) = body.url {
        let from = service::ImportFrom::Url(url);
        service::import_upload(&state, &who, "url", from, kind, options)
            .await
            .map_err(wire)?
    } else {
        let spec = UploadSpec {
            file_name: required("fileName", body.file_name)?,
            content_type: required("contentType", body.content_type)?,
            file_size: whole("fileSize", body.file_size)?,
            parts: u32::try_from(whole("parts", body.parts)?)
                .map_err(|_| Error::invalid("parts", "give 1 to 10000 parts"))?,
            kind,
            options,
        };
        service::create_upload(&state, &who, spec)
            .await
            .map_err(wire)?
    };
    Ok(axum::Json(view(&state, u)))
}

/// `GET /uploads/{uploadId}`.
#[utoipa::path(get, path = "/scenario/v1/uploads/{uploadId}", tag = "scenario", params(("uploadId" = String, Path)),
    responses((status = 200, body = UploadOne), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn read(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<UploadOne>, Failure> {
    let u = service::owned_upload(&state, &who, &id).await?;
    Ok(axum::Json(view(&state, u)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ScenarioUploadAction)]
pub(super) struct UploadAction {
    action: String,
}

/// `POST /uploads/{uploadId}/action`: `complete` joins the parts into the asset. Missing
/// parts: 400 naming `parts` (the upload stays open). A file that is not a valid image:
/// the upload answered `failed` with its `errorMessage`.
#[utoipa::path(post, path = "/scenario/v1/uploads/{uploadId}/action", tag = "scenario", params(("uploadId" = String, Path)),
    request_body = UploadAction,
    responses((status = 200, body = UploadOne), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub(super) async fn action(
    State(state): State<AppState>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Json(body): Json<UploadAction>,
) -> Result<axum::Json<UploadOne>, Failure> {
    if body.action != "complete" {
        return Err(Error::invalid("action", "the one action is `complete`").into());
    }
    let u = service::owned_upload(&state, &who, &id).await?;
    if u.status == UploadStatus::Failed {
        return Ok(axum::Json(view(&state, u)));
    }
    match service::complete_upload(&state, u).await {
        Ok(u) => Ok(axum::Json(view(&state, u))),
        Err(e) if e.field.as_deref() == Some("file") => {
            let u = service::owned_upload(&state, &who, &id).await?;
            if u.status == UploadStatus::Failed {
                Ok(axum::Json(view(&state, u)))
            } else {
                Err(e.into())
            }
        }
        Err(e) => Err(wire(e).into()),
    }
}

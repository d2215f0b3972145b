//! `/embeddings`: text embeddings from a local model's CLIP text encoder.

use super::*;

/// Most texts in one `/embeddings` request.
pub const MAX_EMBEDDING_INPUTS: usize = 256;

/// The body of `/embeddings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OpenAiEmbeddingRequest)]
pub struct EmbeddingRequest {
    /// A text or a list of texts (token arrays are not taken).
    #[schema(value_type = Object)]
    pub input: Value,
    /// A local model (name, alias or id) whose text encoder embeds; absent: the default model
    /// for `txt2img`.
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32s).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Must equal the model's embedding size when given (no truncation).
    #[serde(default)]
    pub dimensions: Option<u32>,
    /// Accepted and ignored.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiEmbedding)]
pub struct Embedding {
    /// `embedding`.
    pub object: &'static str,
    pub index: usize,
    /// The vector (`float`) or its little-endian f32 bytes in base64 (`base64`).
    #[schema(value_type = Object)]
    pub embedding: Value,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiEmbeddingUsage)]
pub struct EmbeddingUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OpenAiEmbeddingList)]
pub struct EmbeddingList {
    /// `list`.
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

/// Text embeddings from a local model's CLIP text encoder: the pooled output of its last
/// text encoder, L2-normalised (768 values for SD 1.x, 1024 for SD 2.x, 1280 for SDXL), at
/// most 77 tokens per text (longer texts are truncated, as CLIP's context is). Runs in this
/// process on the engine (sharing its pipeline cache and device lock with generations).
#[utoipa::path(post, path = "/openai/v1/embeddings", tag = "openai", request_body = EmbeddingRequest,
    responses((status = 200, body = EmbeddingList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "Unknown model")),
    security(("bearer" = [])))]
pub async fn embeddings(
    State(state): State<AppState>,
    Auth(who): Auth,
    Json(req): Json<EmbeddingRequest>,
) -> Result<axum::Json<EmbeddingList>> {
    let texts: Vec<String> = match &req.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    Error::invalid(
                        format!("input[{i}]"),
                        "must be a string (token arrays are not taken)",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(OpenAiError::from(Error::invalid(
                "input",
                "must be a string or a non-empty list of strings",
            ))
            .param("input"))
        }
    };
    if texts.len() > MAX_EMBEDDING_INPUTS {
        return Err(OpenAiError::from(Error::invalid(
            "input",
            format!("at most {MAX_EMBEDDING_INPUTS} texts per request"),
        ))
        .param("input"));
    }
    for (i, t) in texts.iter().enumerate() {
        let field = if texts.len() == 1 && req.input.is_string() {
            "input".to_string()
        } else {
            format!("input[{i}]")
        };
        let bad = |msg: String| Err(OpenAiError::from(Error::invalid(&field, msg)).param(&field));
        if t.is_empty() {
            return bad("must not be empty".into());
        }
        if t.chars().count() > state.limits.max_prompt_chars {
            return bad(format!(
                "at most {} characters",
                state.limits.max_prompt_chars
            ));
        }
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => return Err(Error::invalid("encoding_format", "`float` or `base64`").into()),
    };
    check_model(&state, &who, req.model.as_deref()).await?;
    let model = match &req.model {
        Some(name) => {
            let m = service::find_model(&state, Some(&who), name)
                .await?
                .ok_or_else(|| Error::not_found("model"))?;
            service::runs_on(&state, &m).await?
        }
        None => service::default_model(&state, "txt2img").await?,
    };
    if model.is_lora() {
        return Err(Error::invalid("model", format!("`{}` is a LoRA", model.name)).into());
    }
    let (vectors, tokens) = easel_providers::diffusion::embed(&state.engine, &model, texts).await?;
    if let Some(d) = req.dimensions {
        let n = vectors.first().map_or(0, Vec::len);
        if d as usize != n {
            return Err(Error::invalid(
                "dimensions",
                format!(
                    "the model `{}` makes {n}-dimensional embeddings",
                    model.name
                ),
            )
            .into());
        }
    }
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| Embedding {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    bytes
                ))
            } else {
                json!(v)
            },
        })
        .collect();
    let total: usize = tokens.iter().sum();
    Ok(axum::Json(EmbeddingList {
        object: "list",
        data,
        model: model.name,
        usage: EmbeddingUsage {
            prompt_tokens: total,
            total_tokens: total,
        },
    }))
}

//! Every operation of the spec that Easel does not serve yet: mounted, so a client gets
//! 501 in Scenario's shape naming the operation and what it waits for, not a 404.

use super::*;

/// What an unbuilt operation waits for.
const GENERATE: &str = "this generation mode needs a model or tool Easel does not run yet";
const LIBRARY: &str = "the asset library (editing assets, collections, tags, canvases, zip downloads, uploads in parts, search, public reads) is not built yet";
const MODEL_DOWNLOAD: &str = "model downloads are not offered by Easel: weights stay on the server (a model of yours is a composition of the server's models)";
const PROMPT_SCORES: &str = "prompt scores need a scoring model Easel does not run";
const TRAINING: &str = "model training is not offered by Easel";
const WORKFLOWS: &str = "workflows are not offered by Easel";

/// (method, path, operationId, why): the spec's operations minus those `routes` serves.
pub(super) const OPERATIONS: &[(&str, &str, &str, &str)] = &[
    ("POST", "/assets/download", "PostDownloadAssets", LIBRARY),
    (
        "GET",
        "/assets/download/{jobId}",
        "GetDownloadAssets",
        LIBRARY,
    ),
    (
        "PUT",
        "/assets/{assetId}/lock",
        "LockAssetByAssetId",
        LIBRARY,
    ),
    (
        "GET",
        "/assets/{assetId}/snapshots",
        "GetCanvasAssetSnapshots",
        LIBRARY,
    ),
    (
        "PUT",
        "/assets/{assetId}/unlock",
        "UnlockAssetByAssetId",
        LIBRARY,
    ),
    (
        "POST",
        "/generate/caption",
        "PostCaptionInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/controlnet",
        "PostControlnetInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/controlnet-img2img",
        "PostControlnetImg2imgInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/controlnet-inpaint",
        "PostControlnetInpaintInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/controlnet-inpaint-ip-adapter",
        "PostControlnetInpaintIpAdapterInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/controlnet-ip-adapter",
        "PostControlnetIpAdapterInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/controlnet-texture",
        "PostControlnetTextureInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/custom/{modelId}",
        "PostGenerateCustom",
        GENERATE,
    ),
    (
        "POST",
        "/generate/describe-style",
        "PostDescribeStyleInferences",
        GENERATE,
    ),
    ("POST", "/generate/detect", "PostDetectInferences", GENERATE),
    ("POST", "/generate/embed", "PostEmbedInferences", GENERATE),
    (
        "POST",
        "/generate/img2img-ip-adapter",
        "PostImg2imgIpAdapterInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/img2img-texture",
        "PostImg2imgTextureInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/inpaint-ip-adapter",
        "PostInpaintIpAdapterInferences",
        GENERATE,
    ),
    ("POST", "/generate/patch", "PostPatchInferences", GENERATE),
    ("POST", "/generate/prompt", "PostPromptInferences", GENERATE),
    (
        "POST",
        "/generate/prompt-editing",
        "PostPromptEditingInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/reframe",
        "PostReframeInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/remove-background",
        "PostRemoveBackgroundInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/restyle",
        "PostRestyleInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/segment",
        "PostSegmentInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/skybox-base-360",
        "PostSkyboxBase360Inferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/skybox-upscale-360",
        "PostSkyboxUpscale360Inferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/texture",
        "PostTextureInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/translate",
        "PostTranslateInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/txt2img-ip-adapter",
        "PostTxt2imgIpAdapterInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/txt2img-texture",
        "PostTxt2imgTextureInferences",
        GENERATE,
    ),
    (
        "POST",
        "/generate/vectorize",
        "PostVectorizeInferences",
        GENERATE,
    ),
    (
        "POST",
        "/models/{modelId}/download",
        "PostDownloadModel",
        MODEL_DOWNLOAD,
    ),
    (
        "GET",
        "/models/{modelId}/scores/prompt",
        "GetModelsScoresPromptByModelId",
        PROMPT_SCORES,
    ),
    (
        "GET",
        "/models/{modelId}/scores/training-dataset",
        "GetModelsScoresTrainingDatasetByModelId",
        TRAINING,
    ),
    (
        "PUT",
        "/models/{modelId}/train",
        "PutModelsTrainByModelId",
        TRAINING,
    ),
    (
        "POST",
        "/models/{modelId}/train/action",
        "PostModelTrainingActionByModelId",
        TRAINING,
    ),
    (
        "POST",
        "/models/{modelId}/training-images",
        "PostModelsTrainingImagesByModelId",
        TRAINING,
    ),
    (
        "PUT",
        "/models/{modelId}/training-images/pairs",
        "PutModelsTrainingImagesPairsByModelId",
        TRAINING,
    ),
    (
        "PUT",
        "/models/{modelId}/training-images/{trainingImageId}",
        "PutModelsTrainingImagesByModelIdAndTrainingImageId",
        TRAINING,
    ),
    (
        "DELETE",
        "/models/{modelId}/training-images/{trainingImageId}",
        "DeleteModelsTrainingImagesByModelIdAndTrainingImageId",
        TRAINING,
    ),
    ("POST", "/uploads", "PostUploads", LIBRARY),
    ("GET", "/uploads/{uploadId}", "GetUploads", LIBRARY),
    (
        "POST",
        "/uploads/{uploadId}/action",
        "PostUploadsAction",
        LIBRARY,
    ),
    ("GET", "/workflows", "GetWorkflows", WORKFLOWS),
    ("POST", "/workflows", "PostWorkflows", WORKFLOWS),
    ("GET", "/workflows/tags", "GetWorkflowsTags", WORKFLOWS),
    (
        "GET",
        "/workflows/{workflowId}",
        "GetWorkflowsByWorkflowId",
        WORKFLOWS,
    ),
    (
        "PUT",
        "/workflows/{workflowId}",
        "PutWorkflowsByWorkflowId",
        WORKFLOWS,
    ),
    (
        "DELETE",
        "/workflows/{workflowId}",
        "DeleteWorkflowsByWorkflowId",
        WORKFLOWS,
    ),
    (
        "PUT",
        "/workflows/{workflowId}/run",
        "PutWorkflowRunByWorkflowId",
        WORKFLOWS,
    ),
    (
        "PUT",
        "/workflows/{workflowId}/user-approval",
        "PutWorkflowUserApprovalByWorkflowId",
        WORKFLOWS,
    ),
];

/// The 501 answer of an unbuilt operation.
pub(super) fn answer(method: &str, path: &str, op: &str, why: &str) -> Failure {
    Error::new(
        ErrorKind::NotImplemented,
        format!("{op} ({method} {path}) is not available on this server: {why}"),
    )
    .into()
}

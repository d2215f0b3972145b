-- An upload of a LoRA completes into a model of the uploader's (its file a blob under
-- `models/<model id>.safetensors`, the model's `source` `blob:<key>`), not an asset.
ALTER TABLE uploads ADD COLUMN model_id TEXT;

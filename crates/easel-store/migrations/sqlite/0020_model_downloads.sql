-- A download may pack a user's model (its record and the LoRA files its owner uploaded)
-- instead of assets.
ALTER TABLE downloads ADD COLUMN model_id TEXT;

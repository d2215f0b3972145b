-- A model has at most one default preset, whatever writes race.
CREATE UNIQUE INDEX model_presets_default ON model_presets (model_id) WHERE is_default = 1;

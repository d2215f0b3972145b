-- A canvas's thumbnail is the canvas's picture, not one of the owner's images: hidden from
-- their lists, as new thumbnails are stored.
UPDATE assets SET hidden = 1 WHERE id IN (SELECT thumbnail_id FROM canvases WHERE thumbnail_id IS NOT NULL);

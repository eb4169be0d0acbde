-- Prices in a modality's own unit: unit_price USD per the unit's scale
-- (per 1,000 documents, per search unit, per image …), beside the token
-- prices; unit '' when the model is priced in tokens only.
ALTER TABLE route_pricing ADD COLUMN unit TEXT NOT NULL DEFAULT '';
ALTER TABLE route_pricing ADD COLUMN unit_price DOUBLE PRECISION NOT NULL DEFAULT 0;

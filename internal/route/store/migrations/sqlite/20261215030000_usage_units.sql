-- Usage records of the modalities beyond chat (rerank, moderation …):
-- the modality ('' for chat, embeddings and token counts) and what the
-- call used in its own unit (documents, inputs, images …), which it is
-- priced in besides tokens.
ALTER TABLE route_usage ADD COLUMN modality TEXT NOT NULL DEFAULT '';
ALTER TABLE route_usage ADD COLUMN unit TEXT NOT NULL DEFAULT '';
ALTER TABLE route_usage ADD COLUMN quantity BIGINT NOT NULL DEFAULT 0;

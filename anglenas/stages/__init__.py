"""The pipeline's stages over the engines: shrink a space (ABS), search it, train the found architecture."""

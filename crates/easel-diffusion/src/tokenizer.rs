//! CLIP tokenizer (filled in next).

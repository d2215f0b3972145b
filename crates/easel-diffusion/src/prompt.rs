//! Prompt parsing: emphasis weights and chunking (filled in next).

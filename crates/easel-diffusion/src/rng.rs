//! PyTorch-compatible CPU random numbers (filled in next).

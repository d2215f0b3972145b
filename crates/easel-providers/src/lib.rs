//! easel-providers
